"""The packet-capture layer: capture files → TCP streams → HTTP exchanges → records.

Owns the pcap/pcapng readers and link layers (captures.py, linklayer.py), TCP reassembly (tcp.py), HTTP/1.1
framing and exchange pairing (http.py, http_framing.py, exchanges.py), the fast and tshark engines
(analyze.py, tshark_engine.py), batch analysis into the log with a resumable ledger (batch.py, ledger.py) and
a capture as a DataFrame (frames.py). May import ``analyzer.protocol`` and ``analyzer.store``.
"""

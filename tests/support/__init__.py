"""The one test support layer: what tests and benchmarks share (never imported by the product).

- ``defaults``: the model name, pacing and client timeout every test uses; Ollama's port (the product's constant).
- ``pcapfile``: the one pcap reader/writer for tests (classic pcap in and out, pcapng out) and ``Packet``/``Capture``.
- ``frames``: craft frames and TCP conversations (headers, ``Conversation``, ``frame_of``), decode a frame's TCP.
- ``damage``: rewrite or damage a real capture (DLT_NULL/DLT_LOOP framing, lost, duplicated, reordered segments).
- ``rawhttp``: the one raw HTTP/1.1 client (exact bytes, chunk boundaries kept).
- ``processes``: the emulator and a real ``mitmdump`` with the addon (wraps ``analyzer.recorder.process``).
- ``tcpdump``: capture around a block of code (``--immediate-mode``), and whether live capture is possible here.
- ``workload``: keyword-built workloads of the official ``ollama``/``openai`` clients and what each client got.
- ``corpus``: the committed captures under ``tests/data/captures`` and their golden records.
- ``real_ollama``: a real Ollama v0.24.0 built once from Go's module proxy, two small models, ``RealOllama`` (serve).
- ``legs``: a capture's HTTP exchanges on one port, byte for byte (status, headers, every chunk).

Benchmarks import it too (``from tests.support import ...`` with the checkout on ``sys.path``).
"""

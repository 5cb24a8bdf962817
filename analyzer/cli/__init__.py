"""The command layer: click commands only — parse options, call a library function, print.

``ollama-wire`` (main.py, subcommands loaded lazily), ``analyze-pcap`` (analyze.py) and the shared output
options (output.py). Library code raises its own exceptions; commands turn them into one-line errors. May
import every other layer; no other layer imports it.
"""

"""``ollama-wire top``: the Textual dashboard over the live feed, the log directory, Ollama's /api/ps and the machine.

``state`` holds what is known (pure, no I/O), ``rows`` turns it into table rows shared by the screen and the
``--once`` text snapshot, ``pollers`` are what the workers poll (Ollama's API, the machine, the GPU; the log is
followed by ``analyzer.store.tail.LogFollower``), ``app``/``widgets`` draw it (``top.tcss``).
"""

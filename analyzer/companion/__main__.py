"""``python -m analyzer.companion SETTINGS_JSON``: the feeds' process, started and stopped by the recorder."""

import sys

from analyzer.companion.process import main

sys.exit(main())

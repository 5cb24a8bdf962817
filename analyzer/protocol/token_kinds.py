"""What a response object carried, as bits combined with ``|``: an answer token, a thinking token, a tool-call byte.

Every ``apply_*`` of :class:`~analyzer.protocol.response_content.ResponseContent` returns these (0: none), so
the builder can time the first token of each kind (``ttft_content_ms``, ``ttft_thinking_ms``, ``ttft_tool_ms``).
"""

from __future__ import annotations

TOKEN_CONTENT = 1
TOKEN_THINKING = 2
TOKEN_TOOL = 4
TOKEN_KINDS = (TOKEN_CONTENT, TOKEN_THINKING, TOKEN_TOOL)

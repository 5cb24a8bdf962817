"""Write a small interaction log with the code of an older checkout (tests/analyzer/test_old_logs.py reads it).

How tests/data/old-logs/<commit>/ and its <commit>.*.json were made (once; the files are committed as written):

    git worktree add /tmp/old-<commit> <commit> && cd /tmp/old-<commit>
    PYTHONPATH=. python tests/../make_old_log.py /tmp/oldlogs/<commit>            # that commit's writer
    ollama-wire logs --log-dir /tmp/oldlogs/<commit> -n 0 --json  > <commit>.logs.json     # that commit's CLI
    ollama-wire logs --log-dir /tmp/oldlogs/<commit> --summary --json > <commit>.summary.json
    ollama-wire report /tmp/oldlogs/<commit> --json > <commit>.report.json

d3d0b38 is main before the schema was declared once (75 columns); 90cd392 is from before this round's columns
(48 columns). The records are that commit's capture goldens plus a sampled request and an upstream failure.
"""

import json
import sys
from dataclasses import fields
from pathlib import Path

from analyzer.protocol.record import InteractionRecord
from analyzer.store.log import InteractionLog

out = Path(sys.argv[1])
records = []
names = {f.name for f in fields(InteractionRecord)}
for golden in ("proxy.records.jsonl", "lo4.records.jsonl", "cut.records.jsonl", "tls.records.jsonl"):
    for line in Path("tests/data/captures", golden).read_text().splitlines():
        if line.strip():
            records.append(InteractionRecord.from_dict(json.loads(line)))
# a sampled request (resource columns) and an upstream failure, as the addon writes them
base = records[0]
sampled = InteractionRecord.from_dict(
    {
        **base.to_dict(),
        "id": "old-sampled",
        "started_at": "2026-12-01T05:00:00.000000Z",
        "gpu_util_mean_pct": 87.5,
        "gpu_mem_max_mb": 5120.0,
        "power_mean_w": 210.25,
        "energy_j": 42.5,
        "joules_per_token": 0.85,
        "server_cpu_ms": 310.0,
        "server_rss_max_mb": 6144.0,
    }
)
failed = InteractionRecord(
    id="old-failed",
    source="proxy",
    started_at="2026-12-01T05:00:01.000000Z",
    client="127.0.0.1:50000",
    server="127.0.0.1:11434",
    method="POST",
    path="/api/chat",
    status=502,
    api="ollama",
    kind="chat",
    model="llama3.2:3b",
    stream=True,
    messages=[{"role": "user", "content": 'hi "quoted", comma'}],
    error="upstream connection refused",
    flags=["upstream_failed"],
    total_ms=1.5,
    request_bytes=80,
)
records += [sampled, failed]
log = InteractionLog(out)
for r in records:
    # every record into one day file, in order
    r.started_at = "2026-12-01" + r.started_at[10:] if r.started_at else r.started_at
log.append_many(records)
print(len(records), "records,", len(names), "columns ->", sorted(p.name for p in out.iterdir()))

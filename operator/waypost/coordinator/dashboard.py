"""A small server-rendered dashboard: tasks with queue depth, and recent runs."""

from __future__ import annotations

from html import escape

from aiohttp import web

from waypost.coordinator import appkeys
from waypost.store import runs, tasks

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin-bottom:2rem}td,th{padding:.3rem .8rem;text-align:left;
border-bottom:1px solid #ddd}th{background:#f4f4f4}.succeeded{color:#17803d}
.failed,.dead_lettered{color:#b91c1c}.running{color:#1d4ed8}.retrying{color:#b45309}
code{font-size:.9em}
"""


async def handler(request: web.Request) -> web.Response:
    engine = request.app[appkeys.ENGINE]
    task_rows = await tasks.list_tasks(engine.pool)
    recent, _ = await runs.list_runs(engine.pool, limit=50)
    out = [f"<!doctype html><html><head><meta charset=utf-8><title>waypost</title>"
           f"<meta http-equiv=refresh content=3><style>{_STYLE}</style></head><body>",
           "<h1>waypost</h1><h2>Tasks</h2><table><tr><th>namespace</th><th>task</th>"
           "<th>entrypoint</th><th>queue</th><th>queued</th><th>running</th></tr>"]
    for t in task_rows:
        d = t.definition
        out.append(f"<tr><td>{escape(d.namespace)}</td><td>{escape(d.name)}</td>"
                   f"<td><code>{escape(d.spec.entrypoint)}</code></td><td>{escape(t.queue)}</td>"
                   f"<td>{t.queued}</td><td>{t.running}</td></tr>")
    out.append("</table><h2>Recent runs</h2><table><tr><th>run</th><th>task</th>"
               "<th>status</th><th>attempt</th><th>created</th><th>error</th></tr>")
    for r in recent:
        error = escape(r.error.message[:120]) if r.error else ""
        out.append(f"<tr><td><code>{escape(r.id)}</code></td><td>{escape(r.task)}</td>"
                   f"<td class={escape(r.status.value)}>{escape(r.status.value)}</td>"
                   f"<td>{r.attempt}</td><td>{r.created_at:%H:%M:%S}</td><td>{error}</td></tr>")
    out.append("</table></body></html>")
    return web.Response(text="".join(out), content_type="text/html")

"""Workload for the cluster smoke tests (standard library only).

smoke.py hello            print a greeting and exit 0
smoke.py oom MIB          allocate MIB mebibytes, touching every page
smoke.py serve PORT       answer GET / with this Pod's hostname
smoke.py fetch URL...     GET each URL (retrying for 30 s), print the bodies
"""

import http.server
import socket
import sys
import time
import urllib.request


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "hello"
    if mode == "hello":
        print(f"hello from waypost e2e on {socket.gethostname()}", flush=True)
        return 0
    if mode == "oom":
        chunks = []
        for _ in range(int(argv[2])):
            chunks.append(bytearray(b"x" * (1 << 20)))
        print("allocated without being killed", flush=True)
        return 0
    if mode == "serve":

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"served-by {socket.gethostname()}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        http.server.ThreadingHTTPServer(("", int(argv[2])), Handler).serve_forever()
    if mode == "fetch":
        for url in argv[2:]:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=3) as resp:
                        print(f"{url} -> {resp.read().decode().strip()}", flush=True)
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        print(f"{url} -> FAILED {exc}", flush=True)
                        return 1
                    time.sleep(0.5)
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

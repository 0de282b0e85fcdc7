"""A line echo server on 127.0.0.1:18105 (supervised)."""

import socketserver


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"echo: " + line)
            self.wfile.flush()


if __name__ == "__main__":
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 18105), Echo) as server:
        server.serve_forever()

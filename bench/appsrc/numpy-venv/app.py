"""An http.server app on numpy: `/` answers at once; `/fft` imports numpy's fft and polynomial
submodules lazily (inside the handler)."""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/fft":
            import numpy.fft
            import numpy.linalg
            import numpy.polynomial.polynomial as poly

            signal = np.cos(2 * np.pi * 4 * np.arange(64) / 64)
            peak = int(np.argmax(np.abs(numpy.fft.rfft(signal))))
            det = float(numpy.linalg.det(np.array([[2.0, 1.0], [1.0, 3.0]])))
            roots = sorted(round(float(r), 6) for r in poly.polyroots([-6.0, 1.0, 1.0]))
            body = json.dumps({"peak": peak, "det": round(det, 6), "roots": roots}).encode()
        else:
            body = json.dumps({"ok": True, "numpy": np.__version__}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 18109), Handler).serve_forever()

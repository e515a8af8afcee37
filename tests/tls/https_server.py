#!/usr/bin/env python3
"""A small HTTPS server for the TLS trust tests: Python's own http.server
over its ssl module, bound to 127.0.0.1.

    https_server.py PORT CERT KEY [--client-ca CA] [--dir DIR]

GET .../echo answers JSON: the path and the common name of the client's
certificate (null without one). Any other path is a file of DIR (for a
JWKS document). With --client-ca, a client certificate signed by CA is
required. Prints "ready" once listening.
"""
import argparse
import http.server
import json
import os
import ssl


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("--client-ca")
    parser.add_argument("--dir", default=".")
    args = parser.parse_args()
    root = os.path.abspath(args.dir)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path.endswith("/echo"):
                cert = self.connection.getpeercert()
                subject = None
                if cert:
                    for rdn in cert.get("subject", ()):
                        for name, value in rdn:
                            if name == "commonName":
                                subject = value
                body = json.dumps({"path": self.path, "client_cn": subject}).encode()
                kind = "application/json"
            else:
                path = os.path.join(root, self.path.lstrip("/").split("?")[0])
                if not os.path.abspath(path).startswith(root) or not os.path.isfile(path):
                    self.send_error(404)
                    return
                with open(path, "rb") as f:
                    body = f.read()
                kind = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


main()

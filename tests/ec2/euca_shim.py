"""A test-only stand-in for a Eucalyptus cloud controller, in front of moto.

It speaks the Eucalyptus dialect the `eucalyptus` plugin targets and translates to what
moto understands. It tests the plugin's dialect, not a live Eucalyptus:

- serves only POST /services/compute;
- verifies SigV2 (HmacSHA256, own implementation) and the access key; 403 otherwise;
- accepts only Version=2014-06-15 (400 otherwise);
- rewrites emi- image ids to ami- and the cluster name to moto's zone on the way in, and
  back on the way out, and answers in a Eucalyptus XML namespace;
- forwards to moto with SigV4 (service ec2, region us-east-1).

Usage: python euca_shim.py <port> <moto endpoint> <access key id> <secret>
"""

import base64
import hashlib
import hmac
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.auth
import urllib3
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PORT, MOTO, ACCESS_KEY, SECRET = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
VERSION = "2014-06-15"
CLUSTER, ZONE = "cluster01", "us-east-1a"
NAMESPACE = "http://msgs.eucalyptus.com/2014-06-15/"
HTTP = urllib3.PoolManager()


def encode(s):
    return urllib.parse.quote(s, safe="-_.~")


class Shim(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                           f"</Error></Errors><RequestID>shim</RequestID></Response>")

    def do_GET(self):
        self.error(405, "InvalidAction", "POST only")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.path != "/services/compute":
            return self.error(404, "InvalidAction", "no such service")
        params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        signature = params.pop("Signature", None)
        if (params.get("SignatureVersion") != "2" or params.get("SignatureMethod") != "HmacSHA256"
                or "Timestamp" not in params or signature is None):
            return self.error(403, "AuthFailure", "SigV2 with HmacSHA256 required")
        if params.get("AWSAccessKeyId") != ACCESS_KEY:
            return self.error(403, "AuthFailure", "unknown access key")
        canonical = "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items()))
        to_sign = f"POST\n{self.headers['Host'].lower()}\n{self.path}\n{canonical}"
        expected = base64.b64encode(hmac.new(SECRET.encode(), to_sign.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            return self.error(403, "SignatureDoesNotMatch", "signature mismatch")
        if params.get("Version") != VERSION:
            return self.error(400, "InvalidParameterValue", f"API version {params.get('Version')} is not supported")
        for name in ("AWSAccessKeyId", "SignatureVersion", "SignatureMethod", "Timestamp"):
            params.pop(name)

        def inward(value):
            if value.startswith("emi-"):
                return "ami-" + value[4:]
            return ZONE if value == CLUSTER else value

        forward = {k: inward(v) for k, v in params.items()}
        forward["Version"] = "2016-11-15"
        data = urllib.parse.urlencode(forward)
        request = AWSRequest(method="POST", url=MOTO + "/", data=data,
                             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        botocore.auth.SigV4Auth(Credentials("shim", "shim"), "ec2", "us-east-1").add_auth(request)
        answer = HTTP.request("POST", request.url, body=data, headers=dict(request.headers.items()))
        text = (answer.data.decode()
                .replace("ami-", "emi-")
                .replace(ZONE, CLUSTER)
                .replace("http://ec2.amazonaws.com/doc/2016-11-15/", NAMESPACE))
        self.reply(answer.status, text)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Shim).serve_forever()

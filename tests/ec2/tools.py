"""The EC2 tool ecosystem against a live Skyport, unmodified: Apache Libcloud's EC2 and
Eucalyptus drivers, and Signature Version 2 requests signed by botocore's own SigV2 signer
(and, for HmacSHA1, which botocore does not sign, by Python's hmac).

Usage: python tools.py <scenario> '<json arguments>'

Each scenario asserts what it checks and exits non-zero on the first failure; the Rust
end-to-end tests (tests/tests/ec2_tools.rs) start Skyport and this script.
Arguments: host, port, ca, key ({"access_key_id", "secret_access_key"}).
"""

import base64
import datetime
import hashlib
import hmac
import json
import sys
import time
import urllib.parse

import requests


def libcloud(args):
    """Libcloud's EC2 driver (SigV2, its default), through the region alias us-east-1 and
    its own size table (t3.micro, an instance type alias): sizes, images, nodes, create,
    stop, start, destroy; then with SigV4; then its Eucalyptus driver lists the nodes."""
    import libcloud.security
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import NodeState, Provider

    libcloud.security.CA_CERTS_PATH = args["ca"]
    key, secret = args["key"]["access_key_id"], args["key"]["secret_access_key"]
    ec2 = get_driver(Provider.EC2)(
        key, secret, region="us-east-1", host=args["host"], port=args["port"], secure=True
    )
    sizes = {s.id: s for s in ec2.list_sizes()}
    assert "t3.micro" in sizes, sorted(sizes)[:5]
    images = [i for i in ec2.list_images() if i.name == "skyport-tiny"]
    assert images, "skyport-tiny is listed"
    assert ec2.list_nodes() == [], "no node yet"
    node = ec2.create_node(name="lc-1", size=sizes["t3.micro"], image=images[0])
    assert node.id.startswith("i-"), node

    def current(wanted, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [n for n in ec2.list_nodes() if n.id == node.id]
            if found and found[0].state == wanted:
                return found[0]
            time.sleep(1)
        raise AssertionError(f"{node.id} never {wanted}: {found}")

    running = current(NodeState.RUNNING)
    assert running.private_ips and running.private_ips[0].count(".") == 3, running.private_ips
    assert running.extra["instance_type"] == "sp.micro", running.extra["instance_type"]
    assert running.name == "lc-1", running.name
    # EC2 answers a stop with `stopping` and a start with `pending`; Libcloud checks.
    assert ec2.stop_node(running) is True, "stop_node"
    stopped = current(NodeState.STOPPED)
    assert ec2.start_node(stopped) is True, "start_node"
    running = current(NodeState.RUNNING)

    # The same driver signing with SigV4: the credential scope names the alias.
    v4 = get_driver(Provider.EC2)(
        key, secret, region="us-east-1", host=args["host"], port=args["port"], secure=True,
        signature_version="4",
    )
    assert [n.id for n in v4.list_nodes()] == [node.id]

    # Its Eucalyptus driver (SigV2 at /services/Eucalyptus).
    euca = get_driver(Provider.EUCALYPTUS)(
        key, secret, host=args["host"], port=args["port"], secure=True
    )
    assert [(n.id, n.state) for n in euca.list_nodes()] == [(node.id, NodeState.RUNNING)]

    assert ec2.destroy_node(running) is True, "destroy_node"
    current(NodeState.TERMINATED)
    print("libcloud ok")


def _sigv2_params(args, action, method="HmacSHA256", when=None, extra=()):
    params = {
        "Action": action,
        "Version": "2016-11-15",
        "AWSAccessKeyId": args["key"]["access_key_id"],
        "SignatureVersion": "2",
        "SignatureMethod": method,
        "Timestamp": (when or datetime.datetime.now(datetime.timezone.utc)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
    }
    params.update(extra)
    return params


def _sign_by_hand(args, verb, path, params, secret, digest):
    """SigV2 with Python's hmac: for HmacSHA1, which botocore does not sign."""
    host = f"{args['host']}:{args['port']}"
    query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(str(v), safe='-_.~')}"
        for k, v in sorted(params.items())
    )
    to_sign = f"{verb}\n{host}\n{path}\n{query}"
    mac = hmac.new(secret.encode(), to_sign.encode(), digest)
    return dict(params, Signature=base64.b64encode(mac.digest()).decode())


def _botocore_signed(args, verb, path, params, secret):
    """SigV2 by botocore's own signer (`botocore.auth.SigV2Auth`), as boto did."""
    from botocore.auth import SigV2Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"https://{args['host']}:{args['port']}{path}"
    if verb == "GET":
        request = AWSRequest(method="GET", url=url, params=dict(params))
    else:
        request = AWSRequest(method="POST", url=url, data=dict(params))
    SigV2Auth(Credentials(args["key"]["access_key_id"], secret)).add_auth(request)
    return request.prepare()


def _send(args, prepared):
    return requests.request(
        prepared.method, prepared.url, headers=dict(prepared.headers), data=prepared.body,
        verify=args["ca"],
    )


def _code(response):
    text = response.text
    start = text.find("<Code>")
    return text[start + 6 : text.find("</Code>")] if start >= 0 else ""


def sigv2(args):
    """Good, bad, expired and unsupported-algorithm SigV2 signatures, GET and POST."""
    secret = args["key"]["secret_access_key"]
    for verb, path in [("GET", "/"), ("POST", "/"), ("POST", "/services/compute")]:
        good = _send(args, _botocore_signed(args, verb, path, _sigv2_params(args, "DescribeRegions"), secret))
        assert good.status_code == 200, (verb, path, good.status_code, good.text)
        assert "<regionName>local-1</regionName>" in good.text, good.text
        bad = _send(args, _botocore_signed(args, verb, path, _sigv2_params(args, "DescribeRegions"), "x" + secret))
        assert (bad.status_code, _code(bad)) == (403, "SignatureDoesNotMatch"), (bad.status_code, bad.text)
    # Signed an hour ago (botocore always signs the present, so by hand): outside the window.
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    params = _sign_by_hand(args, "GET", "/", _sigv2_params(args, "DescribeRegions", when=old), secret, hashlib.sha256)
    expired = requests.get(f"https://{args['host']}:{args['port']}/", params=params, verify=args["ca"])
    assert (expired.status_code, _code(expired)) == (400, "RequestExpired"), (expired.status_code, expired.text)
    # HmacSHA1, signed by hand (the GET query form).
    params = _sign_by_hand(args, "GET", "/", _sigv2_params(args, "DescribeImages", "HmacSHA1"), secret, hashlib.sha1)
    sha1 = requests.get(f"https://{args['host']}:{args['port']}/", params=params, verify=args["ca"])
    assert sha1.status_code == 200 and "skyport-tiny" in sha1.text, (sha1.status_code, sha1.text)
    params = _sign_by_hand(args, "GET", "/", _sigv2_params(args, "DescribeImages", "HmacMD5"), secret, hashlib.md5)
    md5 = requests.get(f"https://{args['host']}:{args['port']}/", params=params, verify=args["ca"])
    assert (md5.status_code, _code(md5)) == (401, "AuthFailure") and "HmacMD5" in md5.text, md5.text
    # An action Skyport does not serve is refused by name.
    unknown = _send(args, _botocore_signed(args, "POST", "/", _sigv2_params(args, "DescribeFlyingCars"), secret))
    assert (unknown.status_code, _code(unknown)) == (400, "InvalidAction"), unknown.text
    print("sigv2 ok")


def sigv2_disabled(args):
    """With [auth.sigv2] enabled = false, a good SigV2 signature is refused, saying why."""
    secret = args["key"]["secret_access_key"]
    refused = _send(args, _botocore_signed(args, "GET", "/", _sigv2_params(args, "DescribeRegions"), secret))
    assert (refused.status_code, _code(refused)) == (401, "AuthFailure"), refused.text
    assert "Signature Version 2 is disabled" in refused.text, refused.text
    print("sigv2 disabled ok")


SCENARIOS = {"libcloud": libcloud, "sigv2": sigv2, "sigv2_disabled": sigv2_disabled}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))

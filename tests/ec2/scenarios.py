"""EC2 Query API scenarios, run against a live Skyport with the unmodified boto3.

Usage: python scenarios.py <scenario> '<json arguments>'

Each scenario asserts what it checks and exits non-zero on the first failure; the Rust
end-to-end tests (tests/tests/ec2_api.rs) start Skyport, moto and this script.
Arguments: endpoint, ca, and per scenario keys ({"access_key_id", "secret_access_key"})
and regions.
"""

import datetime
import json
import os
import signal
import sys
import time

import boto3
import botocore.auth
import botocore.config
from botocore.exceptions import ClientError


def client(args, key, region, retries=None):
    config = botocore.config.Config(
        retries={"mode": "standard", "total_max_attempts": retries} if retries else None
    )
    return boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=args["endpoint"],
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        verify=args["ca"],
        config=config,
    )


def expect_error(call, code, status):
    try:
        call()
    except ClientError as e:
        got = (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
        assert got == (code, status), f"expected {code}/{status}, got {got}: {e.response['Error']}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def wait_state(ec2, instance_id, state, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = ec2.describe_instances(InstanceIds=[instance_id])
        current = r["Reservations"][0]["Instances"][0]["State"]["Name"]
        if current == state:
            return
        time.sleep(0.5)
    raise AssertionError(f"{instance_id} did not reach {state} (last: {current})")


def lifecycle(args):
    """The whole lifecycle in one region; leaves one running instance named 'keeper'."""
    ec2 = client(args, args["demo"], args["region"])
    region = args["region"]
    assert region in [r["RegionName"] for r in ec2.describe_regions()["Regions"]]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    assert zones and all(z.startswith(region) for z in zones), zones
    types = {t["InstanceType"]: t for t in ec2.describe_instance_types()["InstanceTypes"]}
    assert types["sp.small"]["MemoryInfo"]["SizeInMiB"] == 256, types
    images = ec2.describe_images()["Images"]
    image = next(i for i in images if i["Name"] == "skyport-tiny")
    assert image["ImageId"].startswith("ami-") and len(image["ImageId"]) == 21

    # Key pairs: created (private key once), imported, listed, used, deleted.
    kp = ec2.create_key_pair(KeyName=f"k-{region}", KeyType="ed25519")
    assert kp["KeyMaterial"].startswith("-----BEGIN PRIVATE KEY-----")
    assert kp["KeyFingerprint"].startswith("SHA256:")
    expect_error(lambda: ec2.create_key_pair(KeyName=f"k-{region}"), "InvalidKeyPair.Duplicate", 400)
    pub = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvbRm2wv8GQcUuA0LUm7kmgUFplH0y8Ghy7bhcr6qRQ test"
    ec2.import_key_pair(KeyName=f"imported-{region}", PublicKeyMaterial=pub)
    names = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert {f"k-{region}", f"imported-{region}"} <= names, names
    expect_error(lambda: ec2.describe_key_pairs(KeyNames=["nope"]), "InvalidKeyPair.NotFound", 400)

    run = ec2.run_instances(
        ImageId=image["ImageId"], InstanceType="sp.micro", MinCount=1, MaxCount=1,
        KeyName=f"k-{region}",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "vm1"}]}],
    )
    inst = run["Instances"][0]
    iid = inst["InstanceId"]
    assert iid.startswith("i-") and len(iid) == 19, iid
    assert inst["ImageId"] == image["ImageId"] and inst["KeyName"] == f"k-{region}"
    assert inst["Placement"]["AvailabilityZone"] in zones
    wait_state(ec2, iid, "running")

    # Describe with filters (tag, state, type), including one that matches nothing.
    found = ec2.describe_instances(Filters=[
        {"Name": "tag:Name", "Values": ["vm1"]},
        {"Name": "instance-state-name", "Values": ["running", "pending"]},
        {"Name": "instance-type", "Values": ["sp.*"]},
    ])["Reservations"]
    assert [r["Instances"][0]["InstanceId"] for r in found] == [iid], found
    assert ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["other"]}])["Reservations"] == []
    status = ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"]
    assert status[0]["InstanceState"]["Name"] == "running"

    # Resize needs a stopped instance, whatever the provider would accept.
    expect_error(lambda: ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "sp.small"}),
                 "IncorrectInstanceState", 400)
    stop = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert stop["PreviousState"]["Name"] == "running", stop
    # EC2 answers a change with its transitional state, whatever the provider did at once.
    assert stop["CurrentState"]["Name"] == "stopping", stop
    wait_state(ec2, iid, "stopped")
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "sp.small"})
    start = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]
    assert start["PreviousState"]["Name"] == "stopped", start
    assert start["CurrentState"]["Name"] == "pending", start
    wait_state(ec2, iid, "running")
    described = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert described["InstanceType"] == "sp.small", described
    ec2.reboot_instances(InstanceIds=[iid])

    # Tags.
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "a"}])
    ec2.delete_tags(Resources=[iid], Tags=[{"Key": "team"}])
    tags = {t["Key"]: t["Value"] for t in ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])["Tags"]}
    assert tags == {"Name": "vm1", "env": "dev"}, tags
    out = ec2.get_console_output(InstanceId=iid)
    assert out["InstanceId"] == iid

    # A second instance that stays up (for the federated view and the bill).
    keeper = ec2.run_instances(
        ImageId=image["ImageId"], InstanceType="sp.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "keeper"}]}],
    )["Instances"][0]["InstanceId"]
    wait_state(ec2, keeper, "running")

    term = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert term["PreviousState"]["Name"] == "running", term
    assert term["CurrentState"]["Name"] in ("shutting-down", "terminated"), term
    wait_state(ec2, iid, "terminated")
    # EC2's rules, not the provider's: a terminated instance cannot start.
    expect_error(lambda: ec2.start_instances(InstanceIds=[iid]), "IncorrectInstanceState", 400)
    ec2.delete_key_pair(KeyName=f"k-{region}")
    ec2.delete_key_pair(KeyName=f"imported-{region}")
    names = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert f"k-{region}" not in names, names
    print(json.dumps({"keeper": keeper, "terminated": iid}))


def federated(args):
    """Region 'skyport' lists the tenant's instances across every provider."""
    ec2 = client(args, args["demo"], "skyport")
    listed = {
        i["InstanceId"]: i["Placement"]["AvailabilityZone"]
        for r in ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])["Reservations"]
        for i in r["Instances"]
    }
    for iid in args["expect"]:
        assert iid in listed, (iid, listed)
    # A launch in the federated region goes to the tenant's default region.
    image = ec2.describe_images()["Images"][0]["ImageId"]
    placed = ec2.run_instances(
        ImageId=image, InstanceType="sp.micro", MinCount=1, MaxCount=1, ClientToken="federated-1"
    )["Instances"][0]
    assert placed["Placement"]["AvailabilityZone"].startswith(args["default_region"]), placed["Placement"]
    # The same ClientToken again: the same instance, nothing new launched.
    again = ec2.run_instances(
        ImageId=image, InstanceType="sp.micro", MinCount=1, MaxCount=1, ClientToken="federated-1"
    )["Instances"]
    assert [i["InstanceId"] for i in again] == [placed["InstanceId"]], again
    ec2.terminate_instances(InstanceIds=[placed["InstanceId"]])
    zones = set(listed.values())
    assert len({z.rsplit("a", 1)[0] for z in zones}) >= 2, zones
    # A region's own view shows only that region's instances.
    for region, iid in args["per_region"].items():
        own = client(args, args["demo"], region).describe_instances()["Reservations"]
        ids = {i["InstanceId"] for r in own for i in r["Instances"]}
        assert iid in ids and not (set(args["expect"]) - {iid}) & ids, (region, ids)


def isolation(args):
    """acme's keys see nothing of demo's and cannot stop or tag it."""
    acme = client(args, args["acme"], args["region"])
    iid = args["instance"]
    ids = {i["InstanceId"] for r in acme.describe_instances()["Reservations"] for i in r["Instances"]}
    assert iid not in ids, ids
    for call in (
        lambda: acme.describe_instances(InstanceIds=[iid]),
        lambda: acme.stop_instances(InstanceIds=[iid]),
        lambda: acme.terminate_instances(InstanceIds=[iid]),
        lambda: acme.create_tags(Resources=[iid], Tags=[{"Key": "owned", "Value": "acme"}]),
        lambda: acme.get_console_output(InstanceId=iid),
    ):
        expect_error(call, "InvalidInstanceID.NotFound", 400)
    demo = client(args, args["demo"], args["region"])
    mine = demo.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert mine["State"]["Name"] == "running", mine
    assert "owned" not in {t["Key"] for t in mine.get("Tags", [])}


def errors(args):
    """Bad signature, skewed date, unknown action, malformed id, presigned GET."""
    region = args["region"]
    good = client(args, args["demo"], region)
    wrong = dict(args["demo"], secret_access_key="x" * 40)
    expect_error(lambda: client(args, wrong, region, retries=1).describe_regions(), "SignatureDoesNotMatch", 403)
    unknown = dict(args["demo"], access_key_id="AKSPAAAAAAAAAAAAAAAA")
    expect_error(lambda: client(args, unknown, region, retries=1).describe_regions(), "AuthFailure", 401)
    expect_error(lambda: client(args, args["demo"], "nowhere-1", retries=1).describe_regions(), "AuthFailure", 401)

    real_now = botocore.auth.get_current_datetime
    try:
        botocore.auth.get_current_datetime = lambda: real_now() - datetime.timedelta(minutes=20)
        expect_error(lambda: client(args, args["demo"], region, retries=1).describe_regions(), "RequestExpired", 400)
    finally:
        botocore.auth.get_current_datetime = real_now

    expect_error(lambda: good.describe_instances(InstanceIds=["i-zzz"]), "InvalidInstanceID.Malformed", 400)
    expect_error(lambda: good.describe_instances(InstanceIds=["i-00000000000000000"]), "InvalidInstanceID.NotFound", 400)
    expect_error(lambda: good.run_instances(ImageId="ami-00000000000000000", MinCount=1, MaxCount=1),
                 "InvalidAMIID.NotFound", 400)
    expect_error(lambda: good.run_instances(MinCount=1, MaxCount=1, ImageId=""), "MissingParameter", 400)
    expect_error(lambda: good.describe_instances(Filters=[{"Name": "colour", "Values": ["red"]}]),
                 "InvalidParameterValue", 400)
    expect_error(lambda: good.describe_regions(DryRun=True), "DryRunOperation", 412)

    # An action Skyport does not serve: signed by botocore, sent as-is.
    import urllib3
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(args["demo"]["access_key_id"], args["demo"]["secret_access_key"])
    http = urllib3.PoolManager(ca_certs=args["ca"])

    def signed_post(body):
        req = AWSRequest(method="POST", url=args["endpoint"] + "/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        botocore.auth.SigV4Auth(creds, "ec2", region).add_auth(req)
        return http.request("POST", req.url, body=body, headers=dict(req.headers.items()))

    r = signed_post("Action=LaunchRockets&Version=2016-11-15")
    assert r.status == 400 and b"<Code>InvalidAction</Code>" in r.data, (r.status, r.data)
    assert b"<RequestID>" in r.data

    # GET with the parameters in the query string, at the alternative path.
    req = AWSRequest(method="GET", url=args["endpoint"] + "/services/compute?Action=DescribeRegions&Version=2016-11-15")
    botocore.auth.SigV4Auth(creds, "ec2", region).add_auth(req)
    r = http.request("GET", req.url, headers=dict(req.headers.items()))
    assert r.status == 200 and b"<regionName>local-1</regionName>" in r.data, (r.status, r.data[:300])

    # The body is covered by the signature: tampering after signing is refused.
    req = AWSRequest(method="POST", url=args["endpoint"] + "/", data="Action=DescribeRegions&Version=2016-11-15",
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    botocore.auth.SigV4Auth(creds, "ec2", region).add_auth(req)
    r = http.request("POST", req.url, body="Action=DescribeImages&Version=2016-11-15", headers=dict(req.headers.items()))
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.data, (r.status, r.data)

    # A presigned URL (query-string SigV4; botocore signs it for the operation's method,
    # POST, with an empty body) works; altering its lifetime breaks the signature.
    url = good.generate_presigned_url("describe_regions", ExpiresIn=60)
    assert "X-Amz-Signature=" in url and "Authorization" not in url
    r = http.request("POST", url)
    assert r.status == 200 and b"<regionName>" in r.data, (r.status, r.data[:300])
    r = http.request("POST", url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"))
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.data, (r.status, r.data)


def throttle(args):
    """A burst beyond the tenant's limit gets RequestLimitExceeded/503; boto3's retry
    then gets through."""
    region = args["region"]
    no_retry = client(args, args["acme"], region, retries=1)
    throttled = 0
    for _ in range(args["burst"]):
        try:
            no_retry.describe_regions()
        except ClientError as e:
            assert e.response["Error"]["Code"] == "RequestLimitExceeded", e.response["Error"]
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            throttled += 1
    assert throttled > 0, "no request was throttled"
    retrying = client(args, args["acme"], region, retries=6)
    # Drain the bucket again, then let the retry logic wait its way through.
    for _ in range(args["burst"]):
        try:
            no_retry.describe_availability_zones()
        except ClientError:
            pass
    r = retrying.describe_instance_types()
    assert r["ResponseMetadata"]["RetryAttempts"] >= 1, r["ResponseMetadata"]
    print(json.dumps({"throttled": throttled, "retries": r["ResponseMetadata"]["RetryAttempts"]}))


def offering(args):
    """RunInstances in region 'skyport' with the skyport:offering tag is placed like the
    native API's orders by offering; elsewhere, or outside the plan, it is refused."""
    ec2 = client(args, args["demo"], "skyport")

    def tagged(offering):
        return [{"ResourceType": "instance", "Tags": [{"Key": "skyport:offering", "Value": offering}]}]

    # No ImageId, no InstanceType: the offering's defaults decide.
    placed = ec2.run_instances(MinCount=1, MaxCount=1, TagSpecifications=tagged("dev-vm"))["Instances"][0]
    assert placed["InstanceType"] == "sp.micro", placed["InstanceType"]
    assert placed["Placement"]["AvailabilityZone"].startswith(args["region"]), placed["Placement"]
    # A choice the offering allows.
    chosen = ec2.run_instances(
        MinCount=1, MaxCount=1, InstanceType="sp.small", TagSpecifications=tagged("dev-vm")
    )["Instances"][0]
    assert chosen["InstanceType"] == "sp.small", chosen["InstanceType"]
    ec2.terminate_instances(InstanceIds=[placed["InstanceId"], chosen["InstanceId"]])

    expect_error(
        lambda: ec2.run_instances(MinCount=1, MaxCount=1, TagSpecifications=tagged(args["outside_plan"])),
        "UnauthorizedOperation",
        403,
    )
    expect_error(
        lambda: client(args, args["demo"], args["region"]).run_instances(
            MinCount=1, MaxCount=1, TagSpecifications=tagged("dev-vm")
        ),
        "InvalidParameterValue",
        400,
    )
    e = expect_error(
        lambda: ec2.run_instances(MinCount=1, MaxCount=1, TagSpecifications=tagged("no-such-offering")),
        "InvalidParameterValue",
        400,
    )
    assert "unknown offering" in e.response["Error"]["Message"], e.response["Error"]


def coherence(args):
    """A write through one replica is never followed by an older cached read on another:
    DescribeInstances (cached 2 s per tenant) on replica B right after RunInstances or
    TerminateInstances through replica A shows the change, five times over."""
    a = client(args, args["key"], args["region"])
    b = client(dict(args, endpoint=args["other_endpoint"]), args["key"], args["region"])

    hits = []

    def live(ec2):
        described = ec2.describe_instances()
        hits.append(described["ResponseMetadata"]["HTTPHeaders"].get("x-skyport-cache") == "hit")
        reservations = described["Reservations"]
        return sorted(
            i["InstanceId"]
            for r in reservations
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        )

    image = next(i for i in a.describe_images()["Images"] if i["Name"] == "skyport-tiny")
    made = []
    for _ in range(5):
        live(b)
        before = live(b)  # cached on B now
        iid = a.run_instances(ImageId=image["ImageId"], InstanceType="sp.micro",
                              MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        made.append(iid)
        after = live(b)
        assert iid in after and iid not in before, (iid, before, after)
    for iid in made:
        live(b)
        a.terminate_instances(InstanceIds=[iid])
        assert iid not in live(b), iid
    # The reads above were served from B's cache (else coherence would be trivial).
    assert any(hits), hits
    if args.get("stall_pid"):
        # B stalled (SIGSTOP) while A writes: A answers without B's acknowledgement, and B,
        # resumed, does not answer from before the write (its lease ran out meanwhile).
        live(b)
        live(b)
        os.kill(args["stall_pid"], signal.SIGSTOP)
        try:
            iid = a.run_instances(ImageId=image["ImageId"], InstanceType="sp.micro",
                                  MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        finally:
            os.kill(args["stall_pid"], signal.SIGCONT)
        assert iid in live(b), iid
        a.terminate_instances(InstanceIds=[iid])
    print(f"coherent after {2 * len(made)} writes, {sum(hits)} of {len(hits)} reads cached")


def failover(args):
    """kill -9 of replica A in the middle of a burst of RunInstances (each with a
    ClientToken of its own) and DescribeInstances through A: the creates A never answered
    are retried through B with the same tokens until B answers them (409-like
    IncorrectInstanceState while A's lease on a create it began stands). Every token ends
    as exactly one instance, the same through either replica, and the cloud runs exactly
    one VM per token. Prints {"instances": [...], "retried": n}."""
    import os
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    no_retries = botocore.config.Config(retries={"total_max_attempts": 1},
                                        connect_timeout=5, read_timeout=60)
    a = boto3.client("ec2", region_name=args["region"], endpoint_url=args["endpoint"],
                     aws_access_key_id=args["key"]["access_key_id"],
                     aws_secret_access_key=args["key"]["secret_access_key"],
                     verify=args["ca"], config=no_retries)
    b = client(dict(args, endpoint=args["other_endpoint"]), args["key"], args["region"])
    image = next(i for i in b.describe_images()["Images"] if i["Name"] == "skyport-tiny")
    tokens = [f"burst-{i}" for i in range(args["creates"])]
    answered, lock, killed = {}, threading.Lock(), threading.Event()

    def run(ec2, token):
        return ec2.run_instances(ImageId=image["ImageId"], InstanceType="sp.micro",
                                 MinCount=1, MaxCount=1,
                                 ClientToken=token)["Instances"][0]["InstanceId"]

    def create_on_a(token):
        try:
            iid = run(a, token)
        except Exception:  # A is gone: refused, reset or cut off
            return
        with lock:
            answered[token] = iid
            if len(answered) == args["kill_after"]:
                os.kill(args["pid"], signal.SIGKILL)
                killed.set()

    def describe_on_a(_):
        try:
            a.describe_instances()
        except Exception:
            pass

    with ThreadPoolExecutor(4) as pool:
        for i, token in enumerate(tokens):
            pool.submit(create_on_a, token)
            pool.submit(describe_on_a, i)
    assert killed.is_set(), f"A answered only {len(answered)} creates"
    retried = [t for t in tokens if t not in answered]
    assert retried, "every create was answered before A died"

    final, deadline = {}, time.time() + 120
    for token in tokens:
        while True:
            try:
                final[token] = run(b, token)
                break
            except ClientError as e:
                busy = e.response["Error"]["Code"] == "IncorrectInstanceState"
                if not busy or time.time() > deadline:
                    raise
                assert "still being created" in e.response["Error"]["Message"], e.response
                time.sleep(1)
    for token, iid in answered.items():
        assert final[token] == iid, (token, iid, final[token])
    assert len(set(final.values())) == len(tokens), final

    cloud = boto3.client("ec2", region_name="us-east-1", endpoint_url=args["moto"],
                         aws_access_key_id="testing", aws_secret_access_key="testing")
    vms = [i for r in cloud.describe_instances(
               Filters=[{"Name": "tag:skyport:managed", "Values": ["true"]}])["Reservations"]
           for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    keys = sorted(t["Value"] for i in vms for t in i.get("Tags", [])
                  if t["Key"] == "skyport:idempotency-key")
    assert len(vms) == len(tokens) and len(set(keys)) == len(vms), (len(vms), keys)
    print(json.dumps({"instances": sorted(final.values()), "retried": len(retried)}))


def cleanup(args):
    """Terminates the given instances in their regions."""
    for region, iid in args["per_region"].items():
        client(args, args["demo"], region).terminate_instances(InstanceIds=[iid])


if __name__ == "__main__":
    scenario, raw = sys.argv[1], sys.argv[2]
    globals()[scenario](json.loads(raw))

"""The webhook address policy: what is never a delivery target, at submission (literal hosts) and delivery."""

import ipaddress

import pytest

from jobcore.addresses import MalformedHostError, host_refusal, literal_address, refusal

REFUSED = {
    "0.0.0.0": "unspecified",
    "10.1.2.3": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.169.254": "metadata",
    "169.254.170.2": "metadata",
    "169.254.1.1": "link-local",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.0.0.8": "reserved",
    "192.0.2.1": "documentation",
    "192.168.0.1": "private",
    "198.18.0.1": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fd00:ec2::254": "metadata",
    "ff02::1": "multicast",
    "fec0::1": "site-local",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "100::1": "discard",
    "5f00::1": "segment routing",
    "4000::1": "reserved",  # outside global unicast 2000::/3
    # IPv6 forms that carry an IPv4 address: the IPv4 address inside decides, or the form is refused outright
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "metadata",
    "::ffff:10.0.0.1": "private",
    "::127.0.0.1": "IPv4-compatible",
    "::8.8.8.8": "IPv4-compatible",
    "64:ff9b::127.0.0.1": "NAT64",
    "64:ff9b::a9fe:a9fe": "metadata",
    "64:ff9b:1::8.8.8.8": "local-use NAT64",
    "2002:7f00:1::": "6to4",
    "2002:a9fe:a9fe::1": "metadata",
    "2002:c0a8:101::": "private",
    "2001::1": "Teredo",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "2001:2::1": "reserved",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "52.94.236.248", "2606:4700::1111", "2a00:1450:4001:80b::200e",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "kind"), REFUSED.items())
def test_non_public_addresses_are_refused_with_what_they_are(address, kind):
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
def test_the_local_runtime_may_reach_loopback(address):
    assert refusal(ipaddress.ip_address(address), allow_loopback=True) is None


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "fd00:ec2::254", "64:ff9b::7f00:1", "2002:7f00:1::"])
def test_allowing_loopback_allows_nothing_else(address):
    assert refusal(ipaddress.ip_address(address), allow_loopback=True) is not None


@pytest.mark.parametrize(("host", "address"), [
    ("2130706433", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("8.8.8.8.", "8.8.8.8"),
    ("::ffff:7f00:1", "::ffff:127.0.0.1"),
])
def test_every_form_getaddrinfo_reads_as_an_address_is_one(host, address):
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "hooks.example.com", "xn--bcher-kva.example.org", "a-b.co"])
def test_names_are_not_addresses(host):
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["999.1.1.1", "1.2.3.4.5", "256.0.0.1", "08.1.1.1", "1.2.3.0xfff", "zz::1", "1:2", "example.123"])
def test_a_host_that_looks_like_an_address_but_is_not_is_malformed(host):
    with pytest.raises(MalformedHostError):
        host_refusal(host)


@pytest.mark.parametrize("host", ["a..b", "-a.com", "a-.com", "exa mple.com", "ex%61mple.com", "a" * 64 + ".com", "a.b:c"])
def test_a_name_that_is_not_a_host_name_is_malformed(host):
    with pytest.raises(MalformedHostError):
        host_refusal(host)


@pytest.mark.parametrize(("host", "kind"), [
    ("localhost", "loopback"),
    ("LOCALHOST.", "loopback"),
    ("hooks.localhost", "loopback"),
    ("metadata.google.internal", "public DNS does not resolve"),
    ("instance-data", "public DNS does not resolve"),
    ("instance-data.ec2.internal", "public DNS does not resolve"),
    ("printer.local", "public DNS does not resolve"),
    ("router.home.arpa", "public DNS does not resolve"),
    ("nothing.invalid", "public DNS does not resolve"),
    ("receiver", "single-label"),
    ("2130706433", "loopback"),
    ("0x7f.1", "loopback"),
    ("::ffff:169.254.169.254", "metadata"),
])
def test_hosts_that_can_never_be_delivered_to_are_refused_without_dns(host, kind):
    reason = host_refusal(host)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("host", ["example.com", "hooks.example.com", "8.8.8.8", "2606:4700::1111", "my_host.example.org"])
def test_hosts_left_to_dns_pass(host):
    assert host_refusal(host) is None


def test_loopback_names_pass_only_for_the_local_runtime():
    assert host_refusal("localhost", allow_loopback=True) is None
    assert host_refusal("127.0.0.1", allow_loopback=True) is None
    assert host_refusal("metadata.google.internal", allow_loopback=True) is not None

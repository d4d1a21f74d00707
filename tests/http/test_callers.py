"""Who is calling (app/http/callers.py): the TCP peer, or the address the outermost trusted
proxy saw; a client's own X-Forwarded-For entries are never read; an API key's id when keys are on."""
import pytest

from mlapi.errors import ApiKeyRequired
from mlapi.http.api_keys import ApiKeys, key_id
from mlapi.http.callers import CALLER_KEY, Callers, caller_of, client_address

KEY = "k" * 24


def environ(forwarded=None, peer="10.0.0.9", path="/predict", **headers):
    env = {"REMOTE_ADDR": peer, "PATH_INFO": path, **headers}
    if forwarded is not None:
        env["HTTP_X_FORWARDED_FOR"] = forwarded
    return env


@pytest.mark.parametrize("hops, forwarded, expected", [
    (0, None, "10.0.0.9"),
    (0, "203.0.113.7", "10.0.0.9"),                 # no trusted proxy: the header is the client's word
    (1, "203.0.113.7", "203.0.113.7"),              # Cloud Run's front end appended what it saw
    (1, "1.1.1.1, 2.2.2.2, 203.0.113.7", "203.0.113.7"),  # forged entries on the left are skipped
    (2, "1.1.1.1, 203.0.113.7, 10.1.1.1", "203.0.113.7"),  # two proxies: the second-last entry
    (2, "203.0.113.7", "10.0.0.9"),                 # fewer entries than proxies: not our chain
    (1, "", "10.0.0.9"),
    (1, None, "10.0.0.9"),
])
def test_the_client_is_the_entry_the_outermost_trusted_proxy_wrote(hops, forwarded, expected):
    assert client_address(environ(forwarded), hops) == expected


def test_a_forged_header_cannot_make_a_client_someone_else():
    callers = Callers(1, None)
    seen = {callers.identify(environ(f"{forged}, 203.0.113.7"))
            for forged in ("1.2.3.4", "5.6.7.8", "unknown", "203.0.113.8, 9.9.9.9")}
    assert seen == {"ip:203.0.113.7"}
    assert Callers(0, None).identify(environ("1.2.3.4")) == "ip:10.0.0.9"


def test_an_ipv6_client_is_its_slash_64_and_the_caller_is_left_in_the_environ():
    callers = Callers(0, None)
    first, second = environ(peer="2001:db8:1:2::1"), environ(peer="2001:db8:1:2:ffff::9")
    assert callers.identify(first) == callers.identify(second) == "ip:2001:db8:1:2::/64"
    assert caller_of(first) == first[CALLER_KEY] == "ip:2001:db8:1:2::/64"
    assert callers.identify(environ(peer="2001:db8:1:3::1")) != caller_of(first)


def test_an_ipv4_client_through_a_dual_stack_socket_is_its_ipv4_address_not_one_slash_64():
    callers = Callers(1, None)
    assert callers.identify(environ(peer="::ffff:203.0.113.7")) == "ip:203.0.113.7"
    assert callers.identify(environ(peer="::ffff:198.51.100.9")) == "ip:198.51.100.9"  # not the same caller
    assert callers.identify(environ("::ffff:203.0.113.7", peer="::ffff:10.0.0.1")) == "ip:203.0.113.7"
    assert callers.identify(environ(peer="2001:db8::ffff:1.2.3.4")) == "ip:2001:db8::/64"  # not a mapped one


def test_with_keys_the_caller_is_the_keys_id_from_any_address():
    callers = Callers(1, ApiKeys((KEY, "other-key-0123456789")))
    for env in (environ("1.1.1.1", HTTP_AUTHORIZATION=f"Bearer {KEY}"),
                environ("2.2.2.2", peer="10.9.9.9", HTTP_X_API_KEY=KEY)):
        assert callers.identify(env) == f"key:{key_id(KEY)}"
    with pytest.raises(ApiKeyRequired):
        callers.identify(environ("1.1.1.1"))
    # Routes with rules of their own ask for no key: the caller is the address there.
    assert callers.identify(environ("1.1.1.1", path="/healthz")) == "ip:1.1.1.1"

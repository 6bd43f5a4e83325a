"""Settings: resolution order, strict parsers, and errors that name the variable at fault."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from marketplace_entitlement import ConfigurationError, load_settings
from marketplace_entitlement._parsers import (
    is_jwt_io_demo_key,
    parse_bool,
    parse_duration,
    parse_signal_rewrite,
)
from tests.keys import JWT_IO_DEMO_PUBLIC_KEY_PEM, public_pem


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of ``key``."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def demo_key() -> rsa.RSAPublicKey:
    """The jwt.io demo key, loaded by cryptography."""
    key = serialization.load_pem_public_key(JWT_IO_DEMO_PUBLIC_KEY_PEM)
    assert isinstance(key, rsa.RSAPublicKey)
    return key


BASE = {"MARKETPLACE_PRODUCT_CODE": "prod-abc123", "MARKETPLACE_VERIFY_SIGNATURE": "false"}


def test_defaults_match_the_contract() -> None:
    """With only a product code (verification off), every setting takes CONTRACT.md's default."""
    settings = load_settings(BASE)
    assert settings.product_code == "prod-abc123"
    assert settings.public_key_version == 1
    assert settings.register_timeout == 1800.0
    assert settings.reregister_interval == 3600.0
    assert settings.log_format == "json"
    assert settings.log_level == "info"
    assert settings.status_file is None
    assert settings.verify_signature is False
    assert settings.region is None


def test_explicit_value_wins_over_environment_which_wins_over_default() -> None:
    """An explicit argument beats the environment, and the environment beats the default."""
    env = {**BASE, "MARKETPLACE_REGISTER_TIMEOUT": "90s", "MARKETPLACE_LOG_LEVEL": "debug"}
    settings = load_settings(env, register_timeout="2m")
    assert settings.register_timeout == 120.0  # explicit
    assert settings.log_level == "debug"  # environment
    assert settings.reregister_interval == 3600.0  # default


def test_settings_are_frozen() -> None:
    """The settings object cannot be changed after it is built."""
    settings = load_settings(BASE)
    with pytest.raises(AttributeError):
        settings.product_code = "other"  # type: ignore[misc]


def test_missing_product_code_names_the_variable() -> None:
    """Without MARKETPLACE_PRODUCT_CODE the error names that variable."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"MARKETPLACE_VERIFY_SIGNATURE": "false"})
    assert caught.value.variable == "MARKETPLACE_PRODUCT_CODE"
    assert "MARKETPLACE_PRODUCT_CODE" in str(caught.value)
    assert caught.value.exit_code == 78


@pytest.mark.parametrize("code", ["has space", "semi;colon", "x" * 256, "ünïcode"])
def test_bad_product_code_is_refused(code: str) -> None:
    """Product codes outside the service's pattern or length are configuration errors."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**BASE, "MARKETPLACE_PRODUCT_CODE": code})
    assert caught.value.variable == "MARKETPLACE_PRODUCT_CODE"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MARKETPLACE_PUBLIC_KEY_VERSION", "0"),
        ("MARKETPLACE_PUBLIC_KEY_VERSION", "one"),
        ("MARKETPLACE_VERIFY_SIGNATURE", "maybe"),
        ("MARKETPLACE_REGISTER_TIMEOUT", "5 minutes"),
        ("MARKETPLACE_REREGISTER_INTERVAL", "-1h"),
        ("MARKETPLACE_LOG_FORMAT", "xml"),
        ("MARKETPLACE_LOG_LEVEL", "verbose"),
        ("MARKETPLACE_REREGISTER_FAILURE_POLICY", "explode"),
        ("MARKETPLACE_STOP_GRACE_PERIOD", "10x"),
        ("MARKETPLACE_TERM_DELAY", "soon"),
        ("MARKETPLACE_SIGNAL_GROUP", "2"),
        ("MARKETPLACE_SIGNAL_REWRITE", "TERM"),
        ("MARKETPLACE_STATUS_MAX_AGE", "1d"),
    ],
)
def test_every_invalid_setting_names_its_variable(variable: str, value: str) -> None:
    """Each invalid value raises a ConfigurationError (exit 78) naming the variable."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**BASE, variable: value})
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    assert caught.value.exit_code == 78


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h3m4s5ms", 7384.005),
        ("1.5h", 5400.0),
    ],
)
def test_duration_examples(text: str, seconds: float) -> None:
    """Bare seconds and Go-style unit sequences parse to seconds."""
    assert parse_duration(text, "X") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "1d", "1 h", "1h 30m", "m5", "1hh", "-5", "1e3", "5ms3"])
def test_duration_rejects_junk(text: str) -> None:
    """Anything but a number or number+unit sequence is refused, naming the variable."""
    with pytest.raises(ConfigurationError, match="MARKETPLACE_X"):
        parse_duration(text, "MARKETPLACE_X")


@given(
    hours=st.integers(0, 99),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
)
def test_duration_roundtrip_property(hours: int, minutes: int, seconds: int, millis: int) -> None:
    """Any Go-style sequence of h, m, s, ms parses to the sum of its parts."""
    text = f"{hours}h{minutes}m{seconds}s{millis}ms"
    expected = hours * 3600 + minutes * 60 + seconds + millis / 1000
    assert parse_duration(text, "X") == pytest.approx(expected)


@given(st.text(alphabet="hms0123456789. x-", max_size=12))
def test_duration_never_crashes_property(text: str) -> None:
    """Any input parses to a non-negative number or raises ConfigurationError, nothing else."""
    try:
        value = parse_duration(text, "X")
    except ConfigurationError as error:
        variable = error.variable
        value = 0.0
    else:
        variable = "X"
    assert variable == "X"
    assert value >= 0


TRUE_WORDS = ["true", "1", "yes", "on"]
FALSE_WORDS = ["false", "0", "no", "off"]


@given(st.sampled_from(TRUE_WORDS + FALSE_WORDS), st.lists(st.booleans(), min_size=5, max_size=5))
def test_bool_accepts_documented_words_in_any_case(word: str, upper: list[bool]) -> None:
    """true/false/1/0/yes/no/on/off parse in any mix of case."""
    mixed = "".join(c.upper() if u else c for c, u in zip(word, upper * 2, strict=False))
    assert parse_bool(mixed, "X") is (word in TRUE_WORDS)


@given(st.text(max_size=8))
def test_bool_refuses_everything_else(text: str) -> None:
    """Any other text is a configuration error naming the variable."""
    if text.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        assert isinstance(parse_bool(text, "X"), bool)
    else:
        with pytest.raises(ConfigurationError, match="MARKETPLACE_FLAG"):
            parse_bool(text, "MARKETPLACE_FLAG")


def test_public_key_as_pem_text_base64_escaped_or_file(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    r"""The key loads from PEM text, base64 of PEM, PEM with \n escapes, or a file; all equal."""
    pem = public_pem(rsa_key)
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    forms = [
        {"MARKETPLACE_PUBLIC_KEY": pem.decode()},
        {"MARKETPLACE_PUBLIC_KEY": base64.b64encode(pem).decode()},
        {"MARKETPLACE_PUBLIC_KEY": pem.decode().replace("\n", "\\n")},
        {"MARKETPLACE_PUBLIC_KEY_FILE": str(path)},
    ]
    expected = rsa_key.public_key().public_numbers()
    for form in forms:
        settings = load_settings({"MARKETPLACE_PRODUCT_CODE": "p", **form})
        assert settings.public_key is not None
        assert settings.public_key.public_numbers() == expected


def test_verification_on_without_a_key_is_a_configuration_error() -> None:
    """Verification is on by default; with no key the gate refuses (78) and says what to set."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"MARKETPLACE_PRODUCT_CODE": "p"})
    assert caught.value.exit_code == 78
    assert "MARKETPLACE_PUBLIC_KEY_FILE" in caught.value.refusal_line()


def test_both_key_variables_set_is_ambiguous(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """Setting both MARKETPLACE_PUBLIC_KEY and MARKETPLACE_PUBLIC_KEY_FILE is refused."""
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(rsa_key))
    env = {
        "MARKETPLACE_PRODUCT_CODE": "p",
        "MARKETPLACE_PUBLIC_KEY": public_pem(rsa_key).decode(),
        "MARKETPLACE_PUBLIC_KEY_FILE": str(path),
    }
    with pytest.raises(ConfigurationError, match="both"):
        load_settings(env)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not a key at all", "neither PEM"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "readable public key"),
    ],
)
def test_unreadable_key_is_refused(value: str, problem: str) -> None:
    """Text that is no PEM public key is a configuration error naming the variable."""
    with pytest.raises(ConfigurationError, match=problem) as caught:
        load_settings({"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_PUBLIC_KEY": value})
    assert caught.value.variable == "MARKETPLACE_PUBLIC_KEY"


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    """A key file that does not exist is a configuration error naming the file variable."""
    env = {"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_PUBLIC_KEY_FILE": str(tmp_path / "no")}
    with pytest.raises(ConfigurationError, match="cannot be read") as caught:
        load_settings(env)
    assert caught.value.variable == "MARKETPLACE_PUBLIC_KEY_FILE"


def test_jwt_io_demo_key_is_refused_with_the_trap_explained() -> None:
    """The jwt.io demo key from AWS's Java sample is refused, and the message says why."""
    assert is_jwt_io_demo_key(demo_key())
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {
                "MARKETPLACE_PRODUCT_CODE": "p",
                "MARKETPLACE_PUBLIC_KEY": JWT_IO_DEMO_PUBLIC_KEY_PEM.decode(),
            }
        )
    assert "jwt.io demo key" in caught.value.message
    assert "your product" in caught.value.refusal_line()


def test_real_sized_key_is_not_mistaken_for_the_demo_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """An ordinary RSA-3072 key is not flagged as the demo key."""
    assert not is_jwt_io_demo_key(rsa_key.public_key())


def test_tiny_rsa_key_is_refused_and_small_one_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An RSA key under 1024 bits is refused; 1024-2047 bits loads with a warning (keys are 3072)."""
    # cryptography will not make a key this small; the modulus need not factor for the check.
    tiny_pem = public_key_pem(rsa.RSAPublicNumbers(65537, (1 << 767) | 0x1F).public_key())
    with pytest.raises(ConfigurationError, match="768-bit"):
        load_settings(
            {"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_PUBLIC_KEY": tiny_pem.decode()}
        )
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with caplog.at_level("WARNING", logger="marketplace_entitlement"):
        settings = load_settings(
            {"MARKETPLACE_PRODUCT_CODE": "p", "MARKETPLACE_PUBLIC_KEY": public_pem(small).decode()}
        )
    assert settings.public_key is not None
    assert settings.public_key.key_size == 1024
    assert any("1024-bit" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "us-east-1"}, "us-east-1"),
        ({"AWS_REGION": "  ", "AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({}, None),
    ],
)
def test_region_prefers_aws_region_then_aws_default_region(
    environ: dict[str, str], region: str | None
) -> None:
    """AWS_REGION (which botocore ignores) wins over AWS_DEFAULT_REGION; neither leaves it open."""
    assert load_settings({**BASE, **environ}).region == region


def test_explicit_region_wins() -> None:
    """An explicit region beats both variables."""
    assert load_settings({**BASE, "AWS_REGION": "eu-west-1"}, region="us-west-2").region == (
        "us-west-2"
    )


def test_signal_rewrite_accepts_names_and_numbers() -> None:
    """FROM:TO pairs take signal names with or without SIG, or numbers; TO may be 0 to drop."""
    assert parse_signal_rewrite("TERM:QUIT, sigint:15,HUP:0", "X") == ((15, 3), (2, 15), (1, 0))


def test_unknown_setting_argument_is_a_type_error() -> None:
    """A misspelt keyword argument is a programming error, not silently ignored."""
    with pytest.raises(TypeError, match="product_cod"):
        load_settings(BASE, product_cod="x")


def test_cryptography_key_object_is_accepted_and_checked(rsa_key: rsa.RSAPrivateKey) -> None:
    """The import API takes a cryptography RSA public key object, with the same checks."""
    settings = load_settings({"MARKETPLACE_PRODUCT_CODE": "p"}, public_key=rsa_key.public_key())
    assert settings.public_key is not None
    assert settings.public_key.public_numbers() == rsa_key.public_key().public_numbers()
    with pytest.raises(ConfigurationError, match=r"jwt\.io demo key"):
        load_settings(
            {"MARKETPLACE_PRODUCT_CODE": "p"},
            public_key=serialization.load_pem_public_key(JWT_IO_DEMO_PUBLIC_KEY_PEM),
        )

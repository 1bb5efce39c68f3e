"""Hub downloads retry themselves after a network error (pipeline.max_retries / retry_backoff); nothing else does."""

import logging
import socket

import pytest
import transformers

from vocabadapt.config import Config, ModelsConfig
from vocabadapt.errors import InputError
from vocabadapt.model import hub
from vocabadapt.model.hub import DownloadRetry, is_transient, load_model, load_tokenizer, resolve_model_dir
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout

SAFE = ModelsConfig()
RETRY = DownloadRetry(max_retries=2, backoff_s=5.0)


@pytest.fixture()
def online(monkeypatch, tmp_path):
    """Hub ids are looked up online (HF_HUB_OFFLINE unset) in an empty cache; time.sleep is recorded, not slept."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    sleeps: list[float] = []
    monkeypatch.setattr(hub.time, "sleep", sleeps.append)
    return sleeps


def _failing(monkeypatch, target, errors, result="loaded"):
    """Patch target.from_pretrained to raise `errors` in turn, then return `result`; returns the call list."""
    calls: list[str] = []

    def fake(name, *args, **kwargs):
        calls.append(name)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    monkeypatch.setattr(target, "from_pretrained", fake)
    return calls


def test_transient_download_error_is_retried_with_doubling_backoff(online, monkeypatch, caplog):
    calls = _failing(monkeypatch, transformers.AutoTokenizer, [ConnectionError("reset"), TimeoutError("slow")])
    with caplog.at_level(logging.WARNING, logger="vocabadapt.model.hub"):
        assert load_tokenizer("some-org/some-tokenizer", SAFE, retry=RETRY) == "loaded"
    assert calls == ["some-org/some-tokenizer"] * 3
    assert online == [5.0, 10.0]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "download of tokenizer 'some-org/some-tokenizer': transient error (ConnectionError: reset); retry 1/2 in 5s",
        "download of tokenizer 'some-org/some-tokenizer': transient error (TimeoutError: slow); retry 2/2 in 10s",
    ]


def test_transient_error_after_the_retries_gives_the_clear_hub_error(online, monkeypatch):
    calls = _failing(monkeypatch, transformers.AutoModelForCausalLM, [ConnectionError("reset")] * 5)
    with pytest.raises(InputError) as e:
        load_model("some-org/some-model", SAFE, retry=RETRY)
    msg = str(e.value)
    assert "'some-org/some-model'" in msg and "after 3 attempts" in msg and "local directory" in msg
    assert "ConnectionError: reset" in msg
    assert len(calls) == 3 and online == [5.0, 10.0]


def test_a_non_network_error_is_not_retried(online, monkeypatch):
    calls = _failing(monkeypatch, transformers.AutoTokenizer, [ValueError("repository not found")])
    with pytest.raises(InputError, match="could not load tokenizer 'some-org/x'.*ValueError: repository not found"):
        load_tokenizer("some-org/x", SAFE, retry=RETRY)
    assert len(calls) == 1 and online == []


def test_the_default_is_one_attempt(online, monkeypatch):
    calls = _failing(monkeypatch, transformers.AutoTokenizer, [ConnectionError("reset")])
    with pytest.raises(InputError) as e:
        load_tokenizer("some-org/x", SAFE)
    assert len(calls) == 1 and online == [] and "attempts" not in str(e.value)


def test_offline_mode_is_never_retried(online, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = _failing(monkeypatch, transformers.AutoTokenizer, [ConnectionError("offline")])
    with pytest.raises(InputError):
        load_tokenizer("some-org/x", SAFE, retry=RETRY)
    assert len(calls) == 1 and online == []


class _Response:
    def __init__(self, status_code):
        self.status_code = status_code


class _HTTPError(OSError):
    def __init__(self, status_code):
        super().__init__(f"HTTP {status_code}")
        self.response = _Response(status_code)


class ConnectError(Exception):  # named as httpx's: recognised by name, whatever library raised it
    pass


class OfflineModeIsEnabled(ConnectionError):  # named as huggingface_hub's
    pass


def _wrapped(inner):
    try:
        raise inner
    except Exception as e:
        try:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from e
        except OSError as outer:
            return outer


@pytest.mark.parametrize(
    "err,transient",
    [
        (ConnectionError("reset"), True),
        (TimeoutError("slow"), True),
        (_HTTPError(503), True),
        (_HTTPError(429), True),
        (_HTTPError(404), False),
        (_HTTPError(401), False),
        (ValueError("bad config.json"), False),
        (_wrapped(ConnectError("refused")), True),  # transformers wraps the network error in an OSError
        (_wrapped(ValueError("bad")), False),
        (OfflineModeIsEnabled("HF_HUB_OFFLINE=1"), False),
    ],
)
def test_is_transient(err, transient):
    assert is_transient(err) is transient


def test_a_refused_connection_is_retried_through_huggingface_hub(online, monkeypatch):
    """The real snapshot_download path: every socket connection is refused; our retries wrap hub's own."""

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(InputError, match="could not load model 'some-org/not-here'.*after 2 attempts"):
        resolve_model_dir("some-org/not-here", retry=DownloadRetry(max_retries=1, backoff_s=7.0))
    assert 7.0 in online  # ours (huggingface_hub's own retries sleep through the same patched time.sleep)


def test_stages_take_the_retry_policy_from_the_pipeline_config(tmp_path):
    config = Config.model_validate({"pipeline": {"max_retries": 4, "retry_backoff": 0.5}})
    ctx = StageContext(layout=RunLayout(tmp_path), config=config, stage="tokenize")
    assert ctx.download_retry == DownloadRetry(max_retries=4, backoff_s=0.5)

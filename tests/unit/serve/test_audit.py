"""The audit log: a tamper campaign on a real 300-record log, concurrency, crash recovery, PII."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import stat
import threading
from pathlib import Path

import pytest

from kiban.errors import DataError
from kiban.serve.audit import (
    HEAD,
    LOG,
    AuditKeys,
    AuditLog,
    VerifyReport,
    load_or_create_keys,
    load_public_key,
    sha256_hex,
    verify,
)

N_RECORDS = 300
EVERY = 25  # 12 checkpoints in the campaign log
SEEDS = range(12)


def record(i: int) -> dict:
    prompt, output = f"質問 {i}", f"回答 {i}：こんにちは"
    return {
        "key_id": f"k{i % 7}",
        "route": "/v1/chat/completions" if i % 3 else "/v1/models",
        "model": "kiban-tiny",
        "status": 200 if i % 11 else 429,
        "prompt_tokens": i % 50,
        "completion_tokens": i % 13,
        "latency_ms": 1.5 * i,
        "prompt_sha256": sha256_hex(prompt),
        "output_sha256": sha256_hex(output),
    }


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> AuditKeys:
    return load_or_create_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def campaign_log(tmp_path_factory: pytest.TempPathFactory, keys: AuditKeys) -> Path:
    state = tmp_path_factory.mktemp("audit")
    with AuditLog(state, hmac_key=keys.hmac_key, signing_key=keys.signing_key, checkpoint_every=EVERY) as log:
        for i in range(N_RECORDS):
            log.append(record(i))
    return state


def lines_of(state: Path) -> list[bytes]:
    return (state / LOG).read_bytes().splitlines(keepends=True)


def tampered(src: Path, dst: Path, lines: list[bytes]) -> Path:
    dst.mkdir()
    (dst / LOG).write_bytes(b"".join(lines))
    shutil.copy(src / HEAD, dst / HEAD)
    return dst


def check(state: Path, keys: AuditKeys) -> VerifyReport:
    return verify(state, hmac_key=keys.hmac_key, public_key=keys.public_key)


def first(report: VerifyReport) -> tuple[int, str]:
    assert not report.ok and report.problems
    return report.problems[0].line, report.problems[0].kind


def is_checkpoint(raw: bytes) -> bool:
    return "checkpoint" in json.loads(raw)


# --- the clean log -----------------------------------------------------------------------------


def test_clean_log_verifies(campaign_log: Path, keys: AuditKeys) -> None:
    report = check(campaign_log, keys)
    assert report.ok, report.problems
    assert report.records == N_RECORDS + N_RECORDS // EVERY
    assert report.checkpoints == N_RECORDS // EVERY
    lines = [json.loads(raw) for raw in lines_of(campaign_log)]
    assert [ln["seq"] for ln in lines] == list(range(len(lines)))
    assert all(b["prev"] == a["mac"] for a, b in zip(lines, lines[1:], strict=False))
    cps = [ln for ln in lines if "checkpoint" in ln]
    assert [cp["checkpoint"] for cp in cps] == [cp["seq"] - 1 for cp in cps]
    assert lines[EVERY]["checkpoint"] == EVERY - 1  # after every EVERY records


# --- the tamper campaign -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_flipped_byte_is_caught_on_its_line(
    campaign_log: Path, keys: AuditKeys, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    lines = lines_of(campaign_log)
    for trial in range(10):
        i = rng.randrange(len(lines))
        line = bytearray(lines[i])
        j = rng.randrange(len(line) - 1)  # any byte but the newline
        line[j] ^= rng.randrange(1, 256)
        bad = tampered(campaign_log, tmp_path / f"t{trial}", [*lines[:i], bytes(line), *lines[i + 1 :]])
        kinds = {"bad_json", "mac_mismatch"} | ({"bad_signature"} if is_checkpoint(lines[i]) else set())
        line_no, kind = first(check(bad, keys))
        assert line_no == i + 1 and kind in kinds, (i, j, check(bad, keys).problems)


@pytest.mark.parametrize("seed", SEEDS)
def test_deleted_line_is_a_seq_gap(campaign_log: Path, keys: AuditKeys, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = lines_of(campaign_log)
    for trial, i in enumerate(rng.sample(range(len(lines) - 1), 10)):  # the last line: see truncation
        bad = tampered(campaign_log, tmp_path / f"t{trial}", lines[:i] + lines[i + 1 :])
        report = check(bad, keys)
        assert [(p.line, p.kind) for p in report.problems] == [(i + 1, "seq_gap")], (i, report.problems)


@pytest.mark.parametrize("seed", SEEDS)
def test_inserted_forgery_is_caught(campaign_log: Path, keys: AuditKeys, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = lines_of(campaign_log)
    for trial in range(10):
        i = rng.randrange(1, len(lines) + 1)
        # A plausible forgery: the previous line's fields, seq and chain, a changed status.
        forged = json.loads(lines[i - 1])
        forged.update(seq=forged["seq"] + 1, prev=forged["mac"], status=200, route="/v1/models")
        forged.pop("checkpoint", None)
        forged.pop("sig", None)
        forged["mac"] = f"{rng.getrandbits(256):064x}"
        raw = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        bad = tampered(campaign_log, tmp_path / f"t{trial}", [*lines[:i], raw, *lines[i:]])
        report = check(bad, keys)
        assert [(p.line, p.kind) for p in report.problems] == [(i + 1, "mac_mismatch")], (i, report.problems)


def test_replayed_line_is_reordered(campaign_log: Path, keys: AuditKeys, tmp_path: Path) -> None:
    lines = lines_of(campaign_log)
    bad = tampered(campaign_log, tmp_path / "t", [*lines[:200], lines[50], *lines[200:]])
    assert [(p.line, p.kind) for p in check(bad, keys).problems] == [(201, "reordered")]


@pytest.mark.parametrize("seed", SEEDS)
def test_swapped_lines_are_reordered(campaign_log: Path, keys: AuditKeys, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = lines_of(campaign_log)
    for trial in range(10):
        a, b = sorted(rng.sample(range(len(lines)), 2))
        swapped = list(lines)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        report = check(tampered(campaign_log, tmp_path / f"t{trial}", swapped), keys)
        assert first(report) == (a + 1, "reordered"), (a, b, report.problems)
        # each moved line is named, nothing else
        expected = {(a + 1, "reordered")} | ({(b + 1, "reordered")} if b > a + 1 else set())
        assert {(p.line, p.kind) for p in report.problems} == expected, (a, b, report.problems)


@pytest.mark.parametrize("seed", SEEDS)
def test_truncated_tail_is_caught(campaign_log: Path, keys: AuditKeys, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = lines_of(campaign_log)
    for trial in range(5):
        keep = rng.randrange(len(lines))  # 0: an empty log
        bad = tampered(campaign_log, tmp_path / f"t{trial}", lines[:keep])
        report = check(bad, keys)
        assert [(p.line, p.kind) for p in report.problems] == [(keep + 1, "truncated_after_checkpoint")]
    # cut mid-line: the partial line is unreadable, and the end is missing
    keep = rng.randrange(len(lines))
    bad = tampered(campaign_log, tmp_path / "mid", [*lines[:keep], lines[keep][:-9]])
    kinds = [(p.line, p.kind) for p in check(bad, keys).problems]
    assert kinds == [(keep + 1, "bad_json"), (keep + 2, "truncated_after_checkpoint")]


def test_truncation_without_head_needs_an_expected_seq(
    campaign_log: Path, keys: AuditKeys, tmp_path: Path
) -> None:
    bad = tampered(campaign_log, tmp_path / "t", lines_of(campaign_log)[:100])
    (bad / HEAD).unlink()
    report = verify(bad, hmac_key=keys.hmac_key, public_key=keys.public_key, expected_last_seq=311)
    assert [(p.line, p.kind) for p in report.problems] == [
        (101, "bad_head"),
        (101, "truncated_after_checkpoint"),
    ]


def test_forged_head_is_caught(campaign_log: Path, keys: AuditKeys, tmp_path: Path) -> None:
    bad = tampered(campaign_log, tmp_path / "t", lines_of(campaign_log)[:100])
    head = json.loads((bad / HEAD).read_text())
    (bad / HEAD).write_text(json.dumps({**head, "seq": 99}))  # roll it back without the key
    assert [p.kind for p in check(bad, keys).problems] == ["bad_head"]


@pytest.mark.parametrize("seed", SEEDS)
def test_edited_checkpoint_signature(campaign_log: Path, keys: AuditKeys, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = lines_of(campaign_log)
    i = rng.choice([n for n, raw in enumerate(lines) if is_checkpoint(raw)])
    cp = json.loads(lines[i])
    k = rng.randrange(len(cp["sig"]))
    cp["sig"] = cp["sig"][:k] + format(int(cp["sig"][k], 16) ^ rng.randrange(1, 16), "x") + cp["sig"][k + 1 :]
    raw = json.dumps(cp, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    bad = tampered(campaign_log, tmp_path / "t", [*lines[:i], raw, *lines[i + 1 :]])
    assert [(p.line, p.kind) for p in check(bad, keys).problems] == [(i + 1, "bad_signature")]


def test_another_signing_key_fails_every_checkpoint(
    campaign_log: Path, keys: AuditKeys, tmp_path: Path
) -> None:
    other = load_or_create_keys(tmp_path)
    report = verify(campaign_log, hmac_key=keys.hmac_key, public_key=other.public_key)
    assert {p.kind for p in report.problems} == {"bad_signature"}
    assert len(report.problems) == N_RECORDS // EVERY


# --- the writer ----------------------------------------------------------------------------------


def test_concurrent_appends_form_one_chain(keys: AuditKeys, tmp_path: Path) -> None:
    n_threads, per_thread = 8, 25
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=keys.signing_key, checkpoint_every=10) as log:

        def work(t: int) -> None:
            for i in range(per_thread):
                log.append({**record(i), "key_id": f"thread{t}"})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    report = check(tmp_path, keys)
    assert report.ok, report.problems
    assert report.records == n_threads * per_thread + n_threads * per_thread // 10


def test_concurrent_appends_return_only_when_durable(
    keys: AuditKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a slow disk (each fsync made to take 5 ms) and 16 concurrent appenders, no append
    returns before an fsync that covers its line has finished."""
    import os
    import time

    real_fsync = os.fsync
    synced_size = [0]  # bytes of audit.jsonl that the last finished fsync covered

    def slow_fsync(fd: int) -> None:
        size = os.fstat(fd).st_size
        time.sleep(0.005)
        real_fsync(fd)
        synced_size[0] = max(synced_size[0], size)

    n_threads, per_thread = 16, 10
    returned: list[tuple[int, int]] = []  # (seq, bytes synced when its append returned)
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None) as log:
        monkeypatch.setattr(os, "fsync", slow_fsync)

        def work(t: int) -> None:
            for i in range(per_thread):
                line = log.append({**record(i), "key_id": f"thread{t}"})
                returned.append((line["seq"], synced_size[0]))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        monkeypatch.undo()
    ends = [len(b) for b in itertools.accumulate(lines_of(tmp_path))]  # end offset of each seq's line
    assert len(returned) == n_threads * per_thread
    assert all(ends[seq] <= synced for seq, synced in returned)
    report = check(tmp_path, keys)
    assert report.ok and report.records == n_threads * per_thread
    head = json.loads((tmp_path / HEAD).read_text())
    assert head["seq"] == n_threads * per_thread - 1


def test_appends_waiting_on_an_fsync_share_the_next_one(
    keys: AuditKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit, made deterministic: the first fsync of the log is held until all 16 appenders
    have written their line; the 15 that waited are then made durable by one more fsync, not 15."""
    import os
    import time

    real_fsync = os.fsync
    n_threads = 16
    log_fsyncs = [0]
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None) as log:

        def held_fsync(fd: int) -> None:
            if fd == log._fd:
                if log_fsyncs[0] == 0:  # the disk is busy until every appender is waiting
                    deadline = time.monotonic() + 20
                    while (tmp_path / LOG).read_bytes().count(b"\n") < n_threads:
                        assert time.monotonic() < deadline, "the appenders never all wrote"
                        time.sleep(0.001)
                log_fsyncs[0] += 1
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", held_fsync)
        threads = [
            threading.Thread(target=log.append, args=({**record(t), "key_id": f"thread{t}"},))
            for t in range(n_threads)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        monkeypatch.undo()
    assert log_fsyncs[0] <= 2, f"{log_fsyncs[0]} fsyncs of the log for {n_threads} concurrent appends"
    assert check(tmp_path, keys).ok


def test_reopen_continues_the_chain(keys: AuditKeys, tmp_path: Path) -> None:
    for _ in range(3):
        with AuditLog(
            tmp_path, hmac_key=keys.hmac_key, signing_key=keys.signing_key, checkpoint_every=4
        ) as log:
            for i in range(3):
                log.append(record(i))
    report = check(tmp_path, keys)
    assert report.ok and report.records == 9 + 2  # checkpoints after records 4 and 8 across reopenings


def test_crash_mid_write_is_recovered_and_flagged(keys: AuditKeys, tmp_path: Path) -> None:
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=keys.signing_key) as log:
        for i in range(5):
            log.append(record(i))
    # the crash: a sixth record reached the disk only in part (its append never returned)
    partial = b'{"completion_tokens":5,"key_id":"k5","lat'
    with open(tmp_path / LOG, "ab") as f:
        f.write(partial)
    assert [(p.line, p.kind) for p in check(tmp_path, keys).problems] == [(6, "bad_json")]

    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=keys.signing_key) as log:
        nxt = log.append(record(6))
    lines = [json.loads(raw) for raw in lines_of(tmp_path)]
    assert lines[5]["event"] == "recovered_truncated_tail" and lines[5]["dropped_bytes"] == len(partial)
    assert lines[5]["seq"] == 5 and nxt["seq"] == 6
    assert check(tmp_path, keys).ok


def test_lost_newline_keeps_the_record(keys: AuditKeys, tmp_path: Path) -> None:
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None) as log:
        log.append(record(0))
    (tmp_path / LOG).write_bytes((tmp_path / LOG).read_bytes()[:-1])
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None) as log:
        log.append(record(1))
    assert check(tmp_path, keys).ok and check(tmp_path, keys).records == 2


def test_opening_a_cut_log_is_refused(campaign_log: Path, keys: AuditKeys, tmp_path: Path) -> None:
    bad = tampered(campaign_log, tmp_path / "t", lines_of(campaign_log)[:100])
    with pytest.raises(DataError, match="ends at seq 99"):
        AuditLog(bad, hmac_key=keys.hmac_key, signing_key=keys.signing_key)


def test_one_writer_at_a_time(keys: AuditKeys, tmp_path: Path) -> None:
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None):
        with pytest.raises(DataError, match="one writer"):
            AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None)


def test_reserved_fields_are_refused(keys: AuditKeys, tmp_path: Path) -> None:
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=None) as log:
        with pytest.raises(ValueError, match="'seq'"):
            log.append({"seq": 3, "route": "/v1/models"})


# --- content and keys ------------------------------------------------------------------------------


def test_content_is_logged_only_on_request_and_redacted(keys: AuditKeys, tmp_path: Path) -> None:
    content = {
        "prompt": "山田です。電話は090-1234-5678、メールは taro.yamada@example.co.jp まで。",
        "output": "承知しました",
    }
    with AuditLog(tmp_path / "off", hmac_key=keys.hmac_key, signing_key=None) as log:
        assert "content" not in log.append({**record(0), "content": content})
    with AuditLog(tmp_path / "on", hmac_key=keys.hmac_key, signing_key=None, log_content=True) as log:
        log.append({**record(0), "content": content})
    raw = (tmp_path / "on" / LOG).read_text(encoding="utf-8")
    assert "090-1234-5678" not in raw and "taro.yamada@example.co.jp" not in raw
    stored = json.loads(raw)["content"]
    assert stored["prompt"] == "山田です。電話は<PII:phone>、メールは <PII:email> まで。"
    assert stored["output"] == "承知しました"
    assert "090-1234-5678" not in (tmp_path / "off" / LOG).read_text(encoding="utf-8")


def test_keys_are_private_and_stable(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path)
    for name in ("audit.key", "audit_ed25519.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert len(keys.hmac_key) == 32
    again = load_or_create_keys(tmp_path)
    assert again.hmac_key == keys.hmac_key
    pub = load_public_key(tmp_path / "audit_ed25519.pub.pem")
    pub.verify(keys.signing_key.sign(b"x"), b"x")
    (tmp_path / "audit.key").chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        load_or_create_keys(tmp_path)

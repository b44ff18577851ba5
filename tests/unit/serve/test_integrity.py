"""Model integrity on a real tiny Hugging Face-layout model: an unsigned download passes unverified,
a signed one passes, and every kind of tampering is refused with the file at fault named."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiban.artifacts import read_manifest, sha256_file
from kiban.errors import ConfigError
from kiban.serve.integrity import (
    SIGNATURE,
    UNVERIFIED,
    IntegrityError,
    file_hashes,
    generate_signing_key,
    public_key_path,
    sign_model,
    verify_model,
)

TINY_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
]


@pytest.fixture
def model(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A private copy of the tiny model: the session fixture is shared and must stay untouched."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "kiban-sign.pem"
    generate_signing_key(path)
    return path


@pytest.fixture
def signed(model: Path, key: Path) -> Path:
    sign_model(model, key)
    return model


def refusal(model: Path, **kwargs) -> IntegrityError:
    with pytest.raises(IntegrityError) as e:
        verify_model(model, **kwargs)
    return e.value


def test_an_unsigned_hugging_face_directory_passes_unverified(model: Path) -> None:
    report = verify_model(model)
    assert not report.verified and report.signed_by is None
    assert report.warnings == [UNVERIFIED]
    assert "kiban sign" in UNVERIFIED


def test_sign_then_verify(model: Path, key: Path) -> None:
    sig_path = sign_model(model, key)
    assert sig_path == model / SIGNATURE
    manifest = read_manifest(model)
    assert manifest.kind == "model"
    assert manifest.extra["files"] == {name: sha256_file(model / name) for name in TINY_FILES}
    assert file_hashes(model) == manifest.extra["files"]
    report = verify_model(model)
    assert report.verified and report.files == len(TINY_FILES) and not report.warnings
    assert report.signed_by is not None and not report.trusted
    trusted = verify_model(model, trusted_key=public_key_path(key))
    assert trusted.trusted and trusted.signed_by == report.signed_by


def test_the_signature_covers_the_exact_bytes_of_the_manifest(signed: Path, key: Path) -> None:
    sig = json.loads((signed / SIGNATURE).read_text())
    assert sig["algorithm"] == "ed25519"
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"]))
    public.verify(bytes.fromhex(sig["signature"]), (signed / "manifest.json").read_bytes())  # no raise


def flip_a_weight_byte(model: Path) -> str:
    path = model / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data, past the header
    path.write_bytes(bytes(data))
    return "model.safetensors"


def edit_tokenizer(model: Path) -> str:
    path = model / "tokenizer.json"
    tok = json.loads(path.read_text(encoding="utf-8"))
    tok["added_tokens"][0]["content"] = "<evil>"
    path.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    return "tokenizer.json"


def edit_config(model: Path) -> str:
    path = model / "config.json"
    cfg = json.loads(path.read_text())
    cfg["rope_theta"] = 1.0
    path.write_text(json.dumps(cfg, indent=2))
    return "config.json"


def delete_generation_config(model: Path) -> str:
    (model / "generation_config.json").unlink()
    return "generation_config.json"


def add_extra_weights(model: Path) -> str:
    shutil.copy(model / "model.safetensors", model / "model-00002-of-00002.safetensors")
    return "model-00002-of-00002.safetensors"


def add_remote_code(model: Path) -> str:
    (model / "modeling_llama.py").write_text("import os\n")
    return "modeling_llama.py"


@pytest.mark.parametrize(
    "tamper",
    [
        flip_a_weight_byte,
        edit_tokenizer,
        edit_config,
        delete_generation_config,
        add_extra_weights,
        add_remote_code,
    ],
)
def test_tampering_is_refused_naming_the_file(signed: Path, key: Path, tamper) -> None:
    name = tamper(signed)
    for kwargs in ({}, {"trusted_key": public_key_path(key)}):  # the signature still holds: files differ
        err = refusal(signed, **kwargs)
        assert len(err.problems) == 1
        assert err.problems[0].startswith(str(signed / name) + ":")
        assert name in str(err) and err.exit_code == 2


def test_a_changed_file_shows_expected_and_actual_hash_prefixes(signed: Path) -> None:
    expected = read_manifest(signed).extra["files"]["config.json"]
    edit_config(signed)
    err = refusal(signed)
    assert f"expected {expected[:12]}" in str(err)
    assert f"actual {sha256_file(signed / 'config.json')[:12]}" in str(err)


def test_every_file_at_fault_is_listed(signed: Path) -> None:
    edit_tokenizer(signed)
    delete_generation_config(signed)
    err = refusal(signed)
    assert [p.split(":")[0] for p in err.problems] == [
        str(signed / "generation_config.json"),
        str(signed / "tokenizer.json"),
    ]
    assert "missing" in err.problems[0] and "and 1 more" in str(err)


def test_harmless_unlisted_files_are_allowed(signed: Path) -> None:
    (signed / "metrics.jsonl").write_text("{}\n")
    (signed / ".cache" / "huggingface").mkdir(parents=True)
    (signed / ".cache" / "huggingface" / "model.safetensors.metadata").write_text("x")
    (signed / "training_state").mkdir()
    (signed / "training_state" / "state.json").write_text("{}")
    assert verify_model(signed).verified


def test_a_rewritten_manifest_is_caught_by_the_trusted_key(signed: Path, key: Path) -> None:
    # The attacker swaps a weight file and recomputes its hash in manifest.json.
    flip_a_weight_byte(signed)
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = sha256_file(signed / "model.safetensors")
    (signed / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    err = refusal(signed, trusted_key=public_key_path(key))
    assert "manifest.json" in str(err) and "signature" in str(err)
    # ... and re-signs it with a key of their own: it holds for itself, not for the trusted key.
    other = signed.parent / "attacker.pem"
    generate_signing_key(other)
    sign_model(signed, other)
    assert verify_model(signed).verified  # self-consistent, which is all an untrusted signature shows
    err = refusal(signed, trusted_key=public_key_path(key))
    assert SIGNATURE in str(err) and "not by the trusted key" in str(err)


def test_a_wrong_trusted_key_is_refused(signed: Path, tmp_path: Path) -> None:
    pub = generate_signing_key(tmp_path / "other.pem")
    err = refusal(signed, trusted_key=pub)
    assert "not by the trusted key" in str(err)


def test_a_trusted_key_requires_a_signature(model: Path, key: Path) -> None:
    err = refusal(model, trusted_key=public_key_path(key))  # plain HF directory: no manifest at all
    assert SIGNATURE in str(err) and "missing" in str(err)
    sign_model(model, key)
    (model / SIGNATURE).unlink()  # hashes present, signature gone
    assert verify_model(model).verified
    err = refusal(model, trusted_key=public_key_path(key))
    assert SIGNATURE in str(err)


def test_a_corrupt_signature_file_is_refused(signed: Path) -> None:
    sig = json.loads((signed / SIGNATURE).read_text())
    sig["signature"] = "00" * 64
    (signed / SIGNATURE).write_text(json.dumps(sig))
    assert "does not verify" in str(refusal(signed))
    (signed / SIGNATURE).write_text("not json")
    assert "unreadable signature file" in str(refusal(signed))


@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/passwd", "a/./b"])
def test_a_manifest_listing_paths_outside_the_model_is_refused(model: Path, bad: str) -> None:
    files = {**file_hashes(model), bad: "0" * 64}  # unsigned: the listing itself is checked
    (model / "manifest.json").write_text(json.dumps({"kind": "model", "files": files}))
    assert "not a plain relative path" in str(refusal(model))


def test_signing_a_tampered_model_is_refused_unless_rehashed(signed: Path, key: Path) -> None:
    edit_config(signed)
    with pytest.raises(IntegrityError, match="refusing to sign") as e:
        sign_model(signed, key)
    assert "config.json" in str(e.value)
    sign_model(signed, key, rehash=True)
    assert verify_model(signed, trusted_key=public_key_path(key)).verified


def test_signing_extends_an_existing_manifest(model: Path, key: Path) -> None:
    (model / "manifest.json").write_text(json.dumps({"kind": "checkpoint", "stats": {"steps": 7}}))
    sign_model(model, key)
    manifest = read_manifest(model)
    assert manifest.kind == "checkpoint" and manifest.stats == {"steps": 7}
    assert sorted(manifest.extra["files"]) == TINY_FILES


def test_signing_keys(tmp_path: Path) -> None:
    path = tmp_path / "k" / "kiban-sign.pem"
    pub = generate_signing_key(path)
    assert pub == tmp_path / "k" / "kiban-sign.pub.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in pub.read_bytes() and b"PRIVATE KEY" in path.read_bytes()
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_signing_key(path)
    assert path.read_bytes() == before
    assert public_key_path(tmp_path / "signer") == tmp_path / "signer.pub.pem"


def test_signing_with_a_missing_key_says_how_to_make_one(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kiban sign --new-key"):
        sign_model(model, tmp_path / "nope.pem")
    assert not (model / "manifest.json").exists()


def test_a_key_readable_by_others_is_refused(model: Path, key: Path) -> None:
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        sign_model(model, key)

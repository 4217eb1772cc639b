"""Candidates that cheat, run with the static policy bypassed: on both backends they see no
answers, forge no result, and change nothing on the host.

Each sentinel sits where a breach would land: the dataset and a run's ledger are planted
in the places the sandbox used to show (the project root, $HOME, /var/tmp), and the files
a writer aims at are the checkout's and the virtual environment's own. With CI=true
neither backend may skip.
"""

import hashlib
import io
import json
import shutil
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_sandbox import candidate

from sandbox import process, runner
from sandbox.process import PROJECT_ROOT, Limits, site_packages

FAST = Limits(timeout_s=60.0)
ANSWERS = ("biovars.npy", "outputs.npy", "meta.json", "ledger.sqlite", "spikes.npy")


@pytest.fixture(scope="module")
def planted():
    """A dataset and a run folder in every place a user's files may be: none may be seen."""
    tag = f"descartes-sentinel-{uuid.uuid4().hex[:8]}"
    folders = [PROJECT_ROOT / tag, Path.home() / ".cache" / tag, Path("/var/tmp") / tag]
    for folder in folders:
        folder.mkdir(parents=True)
        folder.chmod(0o755)  # as "bring your own recordings" would leave it
        np.save(folder / "biovars.npy", np.ones((2, 3, 160), np.float32))
        np.save(folder / "outputs.npy", np.ones((2, 3, 20), np.float32))
        (folder / "meta.json").write_text("{}")
        (folder / "ledger.sqlite").write_bytes(b"SQLite format 3\0")
        for f in folder.iterdir():
            f.chmod(0o644)
    yield folders
    for folder in folders:
        shutil.rmtree(folder)


SEARCH = '''
import json, os
found = []
for top in ("/",):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        for f in files:
            if f.endswith((".npy", ".npz")) or f in ("meta.json", "ledger.sqlite"):
                found.append(os.path.join(root, f))
print("FOUND " + json.dumps([p for p in found if not p.startswith("/opt/site")]))
raise RuntimeError("searched")
'''


def _found(out) -> list[str]:
    line = next(x for x in out.log_tail.splitlines() if x.startswith("FOUND "))
    return json.loads(line[len("FOUND "):])


def test_a_candidate_searching_the_filesystem_finds_nothing_of_the_dataset(backend, planted):
    x = np.zeros((4, 10, 21), np.float32)
    out = runner.evaluate(candidate(SEARCH), x, np.zeros((4, 10, 20), np.float32),
                          {"train": [0, 1], "val": [2]}, latent_dim=8,
                          train={"max_epochs": 1, "verify": False}, lim=FAST, backend=backend)
    found = _found(out)
    assert found  # the search ran: it found its own job's inputs …
    # … and nothing else of anyone's data
    assert all(Path(p).name == "arrays.npz" and Path(p).parent.name == "job" for p in found), \
        found
    assert not any(Path(p).name in ANSWERS for p in found)


VISIBLE = '''
import os
tops = sorted(os.listdir("/"))
print("TOPS " + " ".join(tops))
print("CHECKOUT", os.path.exists({root!r}), os.path.exists({readme!r}))
raise RuntimeError("listed")
'''


def test_each_backend_shows_only_what_its_docs_list(backend):
    src = candidate(VISIBLE.format(root=str(PROJECT_ROOT), readme=str(PROJECT_ROOT / "README.md")))
    out = runner.run_job("check", src, {"latent_dim": 8}, None, FAST, backend=backend)
    lines = out.log_tail.splitlines()
    tops = set(next(x for x in lines if x.startswith("TOPS ")).split()[1:])
    assert "CHECKOUT False False" in lines  # wherever the checkout lives, it is not there
    if backend == "docker":  # the image's own root file system, plus our mounts
        assert {"opt", "job", "out"} <= tops
    else:
        documented = {Path(p).parts[1] for p in process.VISIBLE}
        interpreter = {Path(sys.base_prefix).resolve().parts[1]}
        assert tops <= documented | interpreter, tops - documented - interpreter


def _tree_hash(paths: list[Path]) -> dict[str, str]:
    """Content hash of each file and the listing of each folder in `paths`."""
    out = {}
    for p in paths:
        if p.is_dir():
            out[str(p)] = ",".join(sorted(c.name for c in p.iterdir()))
        elif p.exists():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_a_writing_candidate_changes_no_host_file(backend):
    site = Path(site_packages()[0])
    targets = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "sandbox" / "worker.py",
               PROJECT_ROOT / "descartes_core" / "scoring.py", site / "torch" / "__init__.py",
               Path(sys.prefix) / "pyvenv.cfg"]
    inside = ["/opt/descartes/sandbox/worker.py", "/opt/descartes/descartes_core/scoring.py",
              "/opt/site/torch/__init__.py"]
    folders = [PROJECT_ROOT, PROJECT_ROOT / "sandbox", PROJECT_ROOT / "descartes_core", site,
               Path(sys.prefix), Path.home()]
    write = textwrap.dedent(f'''
        import os
        for p in {[str(t) for t in targets] + inside!r}:
            for mode in ("a", "w"):
                try:
                    open(p, mode).write("pwned")
                except OSError:
                    pass
        for d in {[str(f) for f in folders] + ["/opt/descartes", "/opt/site"]!r}:
            try:
                open(os.path.join(d, "pwned.py"), "w").write("pwned")
            except OSError:
                pass
        ''')
    before = _tree_hash(targets + folders)
    out = runner.run_job("check", candidate(write), {"latent_dim": 8}, None, FAST,
                         backend=backend)
    assert out.ok, out.error  # it ran to the end: every write was tried
    assert _tree_hash(targets + folders) == before


def _bomb(mib: int = 256, names=("latents.npy",)) -> bytes:
    """A zip whose members each inflate to `mib` MiB of zeros from about mib KiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            with z.open(name, "w", force_zip64=True) as f:
                block = bytes(1 << 20)
                for _ in range(mib):
                    f.write(block)
    return buf.getvalue()


FORGE = '''
import json, os
if os.path.exists("/job/arrays.npz"):  # an evaluation: forge its record
  record = {{"strategy": "direct", "device": "cpu", "n_params": "FORGED<img src=x onerror=1>",
          "strategy_note": None, "loss": "mse_rate", "loss_note": None, "epochs": 1,
          "train_loss": 0.0, "val_loss": 0.0,
          "wall_s": -3.6e9, "short_segment_corr": None, "failure": None,
          "failure_message": None, "stopped_by": "max_epochs", "history": [],
          "injected": "unknown key"}}
  open("/out/response.json", "w").write(json.dumps({{"ok": True, "record": record,
                                                      "arrays": True}}))
  open("/out/arrays.npz", "wb").write({bomb!r})
  os._exit(0)
'''


def test_a_forged_record_and_an_npz_bomb_are_a_protocol_failure(backend):
    x = np.zeros((4, 10, 21), np.float32)
    src = candidate(FORGE.format(bomb=_bomb()))
    out = runner.evaluate(src, x, np.zeros((4, 10, 20), np.float32),
                          {"train": [0, 1], "val": [2]}, latent_dim=8,
                          train={"max_epochs": 1, "verify": False}, lim=FAST, backend=backend)
    assert not out.ok and out.error["kind"] == "protocol", out.error
    assert out.record is None and not out.arrays
    assert out.wall_s > 0  # what the budget counts is the host's clock


@pytest.mark.parametrize("record_patch, words", [
    ({"n_params": "FORGED"}, "n_params"), ({"wall_s": -3.6e9}, "wall_s"),
    ({"history": [{"epoch": 1, "train": 0.1, "val": 0.1, "t": 0, "x": 1}]}, "unknown keys"),
    ({"strategy": "gradient descent"}, "expected one of"), ({"device": ["cpu"]}, "string"),
    ({"loss": "hinge"}, "expected one of"),
    ({"epochs": 0}, "epochs 0 but 1 in history"), ({"val_loss": -1e308}, "val_loss"),
    ({"history": [{"epoch": 99999, "train": 0.1, "val": 0.1, "t": 0}]}, "epochs must run"),
])
def test_each_out_of_schema_field_is_named(tmp_path, record_patch, words):
    from sandbox import protocol

    record = {"strategy": "direct", "device": "cpu", "n_params": 10, "strategy_note": None,
              "loss": "mse_rate", "loss_note": None, "epochs": 1, "train_loss": 0.1,
              "val_loss": 0.1, "wall_s": 1.0,
              "short_segment_corr": None, "failure": None, "failure_message": None,
              "stopped_by": "max_epochs",
              "history": [{"epoch": 1, "train": 0.1, "val": 0.1, "t": 0.5}]}
    good = {"ok": True, "record": record, "arrays": False}
    (tmp_path / protocol.RESPONSE).write_text(json.dumps(good))
    assert protocol.read_response(tmp_path, "evaluate", latent_dim=8, max_params=100).ok
    (tmp_path / protocol.RESPONSE).write_text(
        json.dumps({**good, "record": {**record, **record_patch}}))
    with pytest.raises(protocol.ProtocolError, match=words):
        protocol.read_response(tmp_path, "evaluate", latent_dim=8, max_params=100)


def test_arrays_are_checked_before_they_are_decompressed(tmp_path):
    from sandbox import protocol

    (tmp_path / protocol.ARRAYS).write_bytes(_bomb())
    with pytest.raises(protocol.ProtocolError, match="plain file of at most"):
        protocol.read_arrays(tmp_path, 4, 10, 20, 8, 3)
    names = [f"{k}.npy" for k in protocol.ARRAY_NAMES]
    (tmp_path / protocol.ARRAYS).write_bytes(_bomb(4, names))  # small enough to pass the file
    with pytest.raises(protocol.ProtocolError, match="declares 4194304 bytes"):
        protocol.read_arrays(tmp_path, 4, 10, 20, 8, 3)
    good = {"predictions": np.zeros((4, 10, 20), np.float32),
            "latents": np.zeros((4, 2, 8), np.float32),
            "null_latents": np.zeros((3, 4, 2, 8), np.float32)}
    np.savez(tmp_path / protocol.ARRAYS, **good)
    assert protocol.read_arrays(tmp_path, 4, 10, 20, 8, 3)["latents"].shape == (4, 2, 8)
    np.savez(tmp_path / protocol.ARRAYS, **{**good, "latents": good["latents"][:, :, :4]})
    with pytest.raises(protocol.ProtocolError, match="expected float32"):
        protocol.read_arrays(tmp_path, 4, 10, 20, 8, 3)


HOSTILE_OUTPUTS = {
    "a FIFO for the progress log": 'os.mkfifo("/out/progress.jsonl")\nos._exit(0)',
    "a link to a host file": 'os.symlink("/etc/shadow", "/out/response.json")\nos._exit(0)',
    "a huge integer": 'open("/out/response.json", "w").write(\'{"ok": true, "check": '
                      '{"n_params": 1, "forward_ms": 1\' + "0" * 400 + \', "latent_dim": 8, '
                      '"grad_fraction": 1, "roundtrip_error": 0, "warnings": []}}\')\n'
                      'open("/out/progress.jsonl", "w").write(\'{"epoch": 1\' + "0" * 400 + '
                      '\', "total": 1, "train_loss": 1, "val_loss": 1}\\n\')\nos._exit(0)',
    "folders 3000 deep": 'for _ in range(3000):\n    os.mkdir("d")\n    os.chdir("d")\n'
                         'os._exit(0)',
    "a thousand files": 'for i in range(1000):\n    open(f"/out/f{i}", "w").write("x")\n'
                        'import time\ntime.sleep(30)',
}


@pytest.mark.parametrize("name", list(HOSTILE_OUTPUTS))
def test_hostile_outputs_fail_the_candidate_not_the_host(backend, name):
    marker = uuid.uuid4().hex
    src = candidate(f"import os  # {marker}\nos.chdir('/out')\n" + HOSTILE_OUTPUTS[name])
    epochs = []
    out = runner.run_job("check", src, {"latent_dim": 8}, None, Limits(timeout_s=20.0),
                         backend=backend, progress=epochs.append)
    assert not out.ok and out.error["kind"] in ("protocol", "runtime"), out.error
    assert out.wall_s < 20.0 and not epochs
    left = [p for p in Path("/tmp").glob("descartes-job-*/job/request.json")
            if marker in p.read_text(errors="replace")]
    assert not left  # its folder is gone, however deep


def test_the_private_tmp_of_bwrap_is_capped():
    if process.isolation_level() != "bwrap":
        pytest.skip("bubblewrap is not installed")
    src = candidate(f"open('/tmp/big', 'wb').write(bytes({process.TMP_MB + 16} << 20))")
    out = runner.run_job("check", src, {"latent_dim": 8}, None, FAST, backend="process")
    assert not out.ok and "No space left" in out.error["message"], out.error


def test_a_zip_directory_of_a_million_entries_is_never_parsed(tmp_path):
    from sandbox import protocol

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(20000):
            z.writestr(f"{i}", b"")
    (tmp_path / protocol.ARRAYS).write_bytes(buf.getvalue())
    with pytest.raises(protocol.ProtocolError, match="exactly 3 arrays"):
        protocol.read_arrays(tmp_path, 256, 200, 20, 64, 3)

"""Every hostile file we keep, through every way in: both engines, `info`, `quantize`.

The files: tests/fuzz/regressions/<target>/ (fuzzer findings, rebuilt into files by
tests/fuzz/structured.py) and tests/fuzz/regressions/attacks/ (the named attacks
of issue 18, ``test_hostile_checkpoints.ATTACKS``), plus a FIFO. All of them go
through one child process per target folder, with a timeout and, after a warm-up
on a valid model, an address-space limit (RLIMIT_AS) a little above what the warm
process already uses. The contract, per file and way in:

  * Model.load + one forward (``numba`` and ``c``): returns, or raises an
    RwkvEdgeError: never another exception, a signal death or a hang;
  * ``rwkv-edge info`` and ``rwkv-edge quantize``: exit 0, or exit with a one-line
    ``Error:`` message and no traceback; quantize leaves no file behind on failure;
  * peak resident memory grows by no more than a small multiple of the file size.

The named attacks must all be refused (none of them is a usable model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rwkv_edge import c_backend_available

from .test_hostile_checkpoints import ATTACKS

FUZZ = Path(__file__).resolve().parent / "fuzz"
REGRESSIONS = FUZZ / "regressions"
# folders with files (tools/fuzz.sh creates an empty one per target)
TARGETS = sorted(d.name for d in REGRESSIONS.iterdir() if d.is_dir() and any(d.iterdir()))
MODES = ["numba", *(["c"] if c_backend_available() else []), "info", "quantize"]
TIMEOUT_S = 300  # the whole child, every file and mode of one folder
HEADROOM = 384 << 20  # address space beyond the warm process: far below any lie's size
RSS_SLACK = 48 << 20  # peak RSS growth allowed per refused file, plus 32 x its size
LOADED_SLACK = 256 << 20  # the same for a file that loads and runs

_CHILD = r"""
import json, os, resource, shutil, signal, sys, tempfile, time
from pathlib import Path
fuzz_dir, target, modes = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
paths = sys.argv[4:]
sys.path.insert(0, fuzz_dir)
from structured import BUILDERS, _hostile
from click.testing import CliRunner
from rwkv_edge import Model
from rwkv_edge.errors import RwkvEdgeError
from rwkv_edge.cli.main import main as cli

work = Path(tempfile.mkdtemp(prefix="rwe-hostile-"))
vocab = work / "vocab.txt"
vocab.write_text("".join(f"{i} '{chr(96 + i)}' 1\n" for i in range(1, 27)))
runner = CliRunner()

def emit(**kw):
    print(json.dumps(kw), flush=True)

class Hang(Exception):
    pass

def on_alarm(*_):
    raise Hang()

signal.signal(signal.SIGALRM, on_alarm)

def cli_outcome(args, out_dir):
    r = runner.invoke(cli, args, catch_exceptions=True)
    text = r.output.strip()
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        if isinstance(r.exception, Hang):
            raise r.exception
        return "raw", f"{type(r.exception).__name__}: {str(r.exception)[:300]}"
    left = sorted(p.name for p in out_dir.iterdir())
    if r.exit_code == 0:
        return "ok", ""
    last = text.splitlines()[-1] if text else ""
    if "Traceback" in text or not last.startswith("Error: ") or len(last) > 1000:
        return "unclean", text[-600:]
    if left:
        return "leftovers", f"{left} after: {last}"
    return "refused", last

def one(mode, path):
    if mode in ("numba", "c"):
        with Model.load(path, backend=mode, threads=1) as m:
            m.forward([0], m.new_state())
        return "ok", ""
    out_dir = work / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    if mode == "info":
        return cli_outcome(["info", str(path)], out_dir)
    args = ["quantize", str(path), str(out_dir / "q.gguf"), "--type", "q8_0",
            "--method", "rtn", "--tokenizer", str(vocab)]
    return cli_outcome(args, out_dir)

def run(mode, path, seconds=60):
    signal.alarm(seconds)
    try:
        return one(mode, path)
    except RwkvEdgeError as e:
        return "refused", f"{type(e).__name__}: {str(e)[:300]}"
    except Hang:
        return "hang", ""
    except BaseException as e:
        return "raw", f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        signal.alarm(0)

# Warm up on a valid model (imports, numba compilation, the C core), then limit.
h = _hostile()
good = h._model_zip(work / "good.pth")
for mode in modes:
    outcome = run(mode, good, 0)  # no alarm: a cold numba cache compiles for a while
    if outcome[0] != "ok":
        emit(warmup=mode, outcome=outcome)
        sys.exit(3)
if not os.environ.get("RWKV_EDGE_UNDER_ASAN"):  # ASan reserves terabytes of address space
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) << 10 for l in f if l.startswith("VmSize:"))
    limit = vm + int(os.environ["RWE_HEADROOM"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:  # negative control: the limit is really in force
        bytearray(2 * int(os.environ["RWE_HEADROOM"]))
        emit(limit="not enforced")
    except MemoryError:
        emit(limit="enforced")

build, suffix = BUILDERS[target]
for src in paths:
    name = Path(src).name
    if src == "FIFO":
        f = work / "fifo.pth"
        os.mkfifo(f)
        size = 0
    else:
        data = build(Path(src).read_bytes())
        f = work / (name if target == "attacks" else name + suffix)
        f.write_bytes(data)
        size = len(data)
    for mode in modes:
        emit(start=name, mode=mode)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
        t0 = time.perf_counter()
        outcome, detail = run(mode, f)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - rss0
        emit(file=name, mode=mode, outcome=outcome, detail=detail, size=size, grew=grew,
             seconds=round(time.perf_counter() - t0, 3))
    f.unlink()
emit(done=True)
"""


def _run_child(target: str, files: list[str]) -> list[dict[str, object]]:
    env = {**os.environ, "RWE_HEADROOM": str(HEADROOM), "RWKV_EDGE_REPACK": "0"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(FUZZ), target, ",".join(MODES), *files],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd="/",
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        lines = (e.stdout or b"").decode(errors="replace").splitlines() if e.stdout else []
        pytest.fail(f"{target}: the child hung; last: {lines[-1:]}")
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    last = lines[-1] if lines else {}
    if not os.environ.get("RWKV_EDGE_UNDER_ASAN"):
        assert {"limit": "enforced"} in lines, lines[:3]
    assert proc.returncode == 0 and last.get("done"), (
        f"{target}: child exited {proc.returncode} (negative: killed by that signal) "
        f"after {last}; stderr: {proc.stderr[-2000:]}"
    )
    return [x for x in lines if "outcome" in x and "file" in x]


def _files(target: str) -> list[str]:
    files = sorted(str(p) for p in (REGRESSIONS / target).iterdir() if p.name != "README.md")
    return [*files, "FIFO"] if target == "attacks" else files


@pytest.mark.parametrize("target", TARGETS)
def test_every_regression_file_fails_cleanly(target: str) -> None:
    files = _files(target)
    if not files:
        pytest.skip(f"no regression files for {target}")
    results = _run_child(target, files)
    assert len(results) == len(files) * len(MODES)
    bad = [r for r in results if r["outcome"] not in ("ok", "refused")]
    assert not bad, "\n".join(
        f"{r['file']} [{r['mode']}]: {r['outcome']} {r['detail']}" for r in bad
    )
    for r in results:
        # A refusal allocates next to nothing; a file that loads is a model, whose
        # engine allocates its weights (numba may also compile another variant).
        slack = RSS_SLACK if r["outcome"] == "refused" else LOADED_SLACK
        allowed = slack + 32 * int(r["size"])  # type: ignore[call-overload]
        assert int(r["grew"]) <= allowed, r  # type: ignore[call-overload]
    if target == "attacks":  # none of them is a usable model
        loaded = [f"{r['file']} [{r['mode']}]" for r in results if r["outcome"] == "ok"]
        assert not loaded, loaded


def test_every_attack_has_a_regression_file(tmp_path: Path) -> None:
    """tests/fuzz/regressions/attacks/ holds exactly what ATTACKS builds (rebuild:
    python -m tests.test_hostile_files)."""
    for name, build in ATTACKS.items():
        kept = REGRESSIONS / "attacks" / name
        assert kept.is_file(), f"missing {kept}: run python -m tests.test_hostile_files"
        assert kept.read_bytes() == build(tmp_path / name).read_bytes(), name


def _write_attacks() -> None:
    out = REGRESSIONS / "attacks"
    out.mkdir(exist_ok=True)
    for name, build in ATTACKS.items():
        build(out / name)


if __name__ == "__main__":
    _write_attacks()


@pytest.mark.parametrize("how", ["argv", "stdin", "stop"])
def test_cli_takes_bytes_that_are_not_utf8(how: str, tiny_v2: Path) -> None:
    """argv and stdin bytes that are not UTF-8 reach the (byte-level) tokenizer as the
    same bytes: no UnicodeEncodeError traceback (issue 18)."""
    backend = "c" if c_backend_available() else "numba"
    cmd = [sys.executable, "-m", "rwkv_edge.cli.main", "generate"]
    prompt, stdin = b"Hi \xff\xfe there", None
    if how == "stdin":
        prompt, stdin = b"-", b"Hi \xff\xfe there\n"
    args = [*cmd, prompt, "-m", str(tiny_v2), "--backend", backend, "-n", "4", "--seed", "1"]
    if how == "stop":
        args += ["--stop", b"\xff"]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(args, input=stdin, capture_output=True, timeout=300, cwd="/", env=env)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert proc.stdout.strip(), "generated nothing"

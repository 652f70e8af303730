"""Learning check: do the methods learn anything on multi-object scenes, and which learns most at equal budget?

    python bench/learning_check.py --methods byol,soco,slotcon --budget-minutes M
        [--backbone resnet18] [--size 96] [--batch-size 32] [--scenes DIR] [--n 2000] [--out DIR]

A benchmark, not a test: it asserts nothing. Steps, each through the objssl command line:

1. **Scenes.** ``objssl data scenes --out SCENES --n N`` (default ``OUT/scenes``), reused when
   ``SCENES/scenes.json`` exists (its own arguments then count, not ``--n``).
2. **Proposals.** For each method that reads boxes (``Method.needs_proposals``), one cache of
   ``SCENES/images`` built with ``objssl proposals --source SOURCE`` (default selective_search);
   a rerun resumes it. Its time is reported and is not part of any method's budget. Selective
   search is slow on a small CPU (0.64 scenes/s with 2 workers on a loaded 2-core machine, so about
   50 minutes for 2000 scenes); ``--proposal-source random`` is the quick stand-in.
3. **Pretraining at equal wall-clock budget.** Each method's demo config (``configs/<method>_demo.yaml``)
   with the backbone, image size, batch size, data (``SCENES/images``) and proposals replaced, and
   ``train.max_steps`` set far beyond reach. The budget clock of a run starts at its first record in
   ``metrics.jsonl`` (after step 1, so start-up and the first data-loader fill are not counted) and
   after ``--budget-minutes`` the run gets SIGTERM: it finishes its step, writes a checkpoint and
   exits with status 3 (docs/reliability.md). Nothing is added to the trainer. Because the schedule
   spans ``max_steps``, the learning rate stays at its post-warm-up value for the whole run (cosine
   decay over a horizon no run reaches): every method is compared at a constant learning rate.
4. **Evaluation** of each checkpoint (online backbone) and of ``random`` (the same backbone, random
   init): ``objssl eval knn`` and ``objssl eval linear`` on ``SCENES/crops/{train,val}`` at
   ``--eval-size``, ``objssl eval svm --low-shot`` on ``SCENES/voc`` at ``--svm-size`` (ORL's feat5
   pools res5 with a 6 x 6 window, so a ResNet needs at least 192 px there).
5. **Report.** ``objssl eval report`` → ``OUT/report.png`` and ``OUT/report.csv``; ``OUT/learning_check.json``
   holds the budget, steps, images seen, times and the machine.

Timings depend on the machine and on what else runs on it; the json records the CPU count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

#: far beyond any budget: the run is stopped by SIGTERM, never by its schedule
UNREACHABLE_STEPS = 10_000_000
#: how long a run may take to log its first step before it counts as failed
START_TIMEOUT_S = 900
#: how long a run may take to finish its step and write the checkpoint after SIGTERM
STOP_TIMEOUT_S = 900


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": REPO + (os.pathsep + path if path else ""), "HF_HUB_OFFLINE": "1"}


def _objssl(*args: str, log: str | None = None, fatal: bool = True) -> bool:
    """Run an objssl command to completion, its output to ``log`` (else the console).

    A failure ends the benchmark when ``fatal``; otherwise it is printed and False returned.
    """
    cmd = [sys.executable, "-m", "objssl.cli", *args]
    print("$ objssl " + " ".join(args), flush=True)
    if log is None:
        code = subprocess.run(cmd, env=_env()).returncode
        tail = ""
    else:
        with open(log, "w") as f:
            code = subprocess.run(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT).returncode
        with open(log) as f:
            tail = f"; end of {log}:\n" + f.read()[-1500:]
    if code == 0:
        return True
    message = f"objssl {' '.join(args[:2])} failed (status {code}){tail}"
    if fatal:
        raise SystemExit(message)
    print(message, flush=True)
    return False


def ensure_scenes(args: argparse.Namespace) -> str:
    scenes = os.path.abspath(args.scenes or os.path.join(args.out, "scenes"))
    manifest = os.path.join(scenes, "scenes.json")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            used = json.load(f)["arguments"]
        print(f"reusing the scene benchmark {scenes} (n={used['n']}, size={used['size']}, seed={used['seed']})")
        return scenes
    _objssl("data", "scenes", "--out", scenes, "--n", str(args.n), "--seed", str(args.seed), "--no-progress")
    return scenes


def needs_proposals(method: str) -> bool:
    import objssl  # noqa: F401 - registers the methods
    from objssl.registry import METHODS

    return METHODS.get(method).needs_proposals({"name": method})


def ensure_proposals(args: argparse.Namespace, scenes: str, timings: dict) -> str:
    cache = os.path.join(scenes, f"proposals_{args.proposal_source}")
    start = time.monotonic()
    _objssl("proposals", "--source", args.proposal_source, "--data", os.path.join(scenes, "images"),
            "--out", cache, "--workers", str(args.workers), "--no-progress",
            log=os.path.join(args.out, f"proposals_{args.proposal_source}.log"))
    timings["proposals_s"] = round(time.monotonic() - start, 1)
    return cache


def method_config(method: str, args: argparse.Namespace, scenes: str, proposals: str | None) -> dict:
    import yaml

    with open(os.path.join(REPO, "configs", f"{method}_demo.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["method"]["image_size"] = args.size
    cfg["backbone"] = {**cfg.get("backbone", {}), "name": args.backbone}
    cfg["data"] = {**cfg.get("data", {}), "path": os.path.join(scenes, "images"), "num_workers": args.workers}
    if proposals:
        cfg["data"]["proposals"] = proposals
    else:
        cfg["data"].pop("proposals", None)
    cfg["train"] = {**cfg.get("train", {}), "max_steps": UNREACHABLE_STEPS, "batch_size": args.batch_size,
                    "out": os.path.join(args.out, "runs", method), "ckpt_every": UNREACHABLE_STEPS,
                    "log_every": 1, "progress": False, "tensorboard": False, "seed": args.seed}
    return cfg


def _last_step(metrics: str) -> int | None:
    try:
        with open(metrics) as f:
            lines = [line for line in f if line.strip()]
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue  # a line being written
    return None


def pretrain(method: str, cfg: dict, args: argparse.Namespace) -> dict:
    """Run ``objssl pretrain`` for ``--budget-minutes`` of training, then SIGTERM; the run's record."""
    import yaml

    from objssl.checkpoint import find_latest_checkpoint

    out = cfg["train"]["out"]
    shutil.rmtree(out, ignore_errors=True)
    cfg_path = os.path.join(args.out, "configs", f"{method}.yaml")
    os.makedirs(os.path.dirname(cfg_path), exist_ok=True)
    with open(cfg_path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    log_path = os.path.join(args.out, f"pretrain_{method}.log")
    metrics = os.path.join(out, "metrics.jsonl")
    budget = args.budget_minutes * 60
    print(f"$ objssl pretrain --config {cfg_path}  (SIGTERM {args.budget_minutes} min after step 1)", flush=True)
    launched = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "objssl.cli", "pretrain", "--config", cfg_path],
                                env=_env(), stdout=log, stderr=subprocess.STDOUT)
        clock = None
        while proc.poll() is None:
            now = time.monotonic()
            if clock is None and _last_step(metrics) is not None:
                clock = now
            if clock is not None and now - clock >= budget:
                proc.send_signal(signal.SIGTERM)
                break
            if clock is None and now - launched > START_TIMEOUT_S:
                proc.kill()
                break
            time.sleep(0.5)
        stopped_at = time.monotonic()
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    ckpt = find_latest_checkpoint(os.path.join(out, "checkpoints"))
    steps = _last_step(metrics) or 0
    record = {
        "method": method, "exit_status": code, "checkpoint": ckpt, "steps": steps,
        "images_seen": steps * args.batch_size,
        "train_s": round(stopped_at - clock, 1) if clock else None,
        "startup_s": round(clock - launched, 1) if clock else None,
        "steps_per_s": round(steps / (stopped_at - clock), 3) if clock and stopped_at > clock else None,
        "log": log_path,
    }
    if code != 3 or ckpt is None:
        print(f"  {method}: the run did not stop with a checkpoint (status {code}); see {log_path}", flush=True)
        record["checkpoint"] = None
    else:
        print(f"  {method}: {steps} steps in {record['train_s']} s ({record['steps_per_s']} steps/s)", flush=True)
    return record


def evaluate(name: str, ckpt: str, args: argparse.Namespace, scenes: str) -> list[str]:
    folder = os.path.join(args.out, "eval")
    os.makedirs(folder, exist_ok=True)
    common = ["--backbone", args.backbone, "--workers", str(args.workers), "--no-progress"]
    crops = ["--train", os.path.join(scenes, "crops", "train"), "--val", os.path.join(scenes, "crops", "val")]
    outputs = []
    for protocol, extra, size in (
        ("knn", crops, args.eval_size),
        ("linear", crops, args.eval_size),
        ("svm", ["--voc", os.path.join(scenes, "voc"), "--low-shot"], args.svm_size),
    ):
        result = os.path.join(folder, f"{name}_{protocol}.json")
        if _objssl("eval", protocol, ckpt, *extra, *common, "--image-size", str(size), "-o", result,
                   log=os.path.join(folder, f"{name}_{protocol}.log"), fatal=False):
            outputs.append(result)
    return outputs


def _machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="byol,soco,slotcon", help="comma-separated method names")
    p.add_argument("--budget-minutes", type=float, required=True, help="training wall-clock per method")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=96, help="pretraining view size (method.image_size)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="data-loader / proposal worker processes")
    p.add_argument("--scenes", help="scene benchmark folder (built there if absent; default OUT/scenes)")
    p.add_argument("--n", type=int, default=2000, help="scenes to build when the benchmark is absent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proposal-source", default="selective_search")
    p.add_argument("--eval-size", type=int, help="image size of eval knn/linear on the crops (default --size)")
    p.add_argument("--svm-size", type=int, default=224, help="image size of eval svm on the scenes (default 224)")
    p.add_argument("--out", default="runs/learning_check")
    args = p.parse_args()
    args.out = os.path.abspath(args.out)
    args.eval_size = args.eval_size or args.size
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    os.makedirs(args.out, exist_ok=True)

    timings: dict = {}
    start = time.monotonic()
    scenes = ensure_scenes(args)
    timings["scenes_s"] = round(time.monotonic() - start, 1)
    proposals = ensure_proposals(args, scenes, timings) if any(needs_proposals(m) for m in methods) else None

    runs = [pretrain(m, method_config(m, args, scenes, proposals if needs_proposals(m) else None), args)
            for m in methods]
    start = time.monotonic()
    results = evaluate("random", "random", args, scenes)
    for run in runs:
        if run["checkpoint"]:
            results += evaluate(run["method"], run["checkpoint"], args, scenes)
    timings["eval_s"] = round(time.monotonic() - start, 1)
    report = os.path.join(args.out, "report.png")
    _objssl("eval", "report", *results, "-o", report, "--csv", os.path.join(args.out, "report.csv"))
    summary = {"budget_minutes": args.budget_minutes, "backbone": args.backbone, "size": args.size,
               "batch_size": args.batch_size, "eval_size": args.eval_size, "svm_size": args.svm_size,
               "scenes": scenes, "proposals": proposals, "runs": runs, "timings": timings,
               "results": results, "report": report, "machine": _machine()}
    with open(os.path.join(args.out, "learning_check.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {report}, {os.path.join(args.out, 'report.csv')} and {os.path.join(args.out, 'learning_check.json')}")


if __name__ == "__main__":
    main()

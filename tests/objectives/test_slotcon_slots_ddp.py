"""slotcon_slots under DDP when one process has no (or one) slot present in both views: every process
must take the same branch (the keys are all-gathered) and every predictor parameter must get a gradient
(DDP's reducer waits for all of them), or the run hangs or fails on its next step."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel as DDP

    from objssl.objectives import SlotConSlots
    from objssl.objectives.base import BuildContext

    K, D = 4, 8

    def scores_winning(winners, B=2, hw=3):
        # prototype scores [B, K, hw, hw] where image b's pixels are won by the prototypes in winners[b]
        s = torch.zeros(B, K, hw, hw)
        for b, ks in enumerate(winners):
            for p in range(hw * hw):
                s[b, ks[p % len(ks)], p // hw, p % hw] = 1.0
        return s

    class SlotTerm(torch.nn.Module):
        # as in training, DDP wraps the whole model and the term calls its predictor inside
        def __init__(self, term):
            super().__init__()
            self.term = term
            self.predictor = term.build_heads(BuildContext(backbone=None, image_size=32))["predictor"]

        def forward(self, *args):
            return self.term._contrast(self.predictor, *args)

    def run(rank, port, out):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2)
        torch.manual_seed(0)
        term = SlotConSlots(num_prototypes=K, proj_hidden_dim=16, proj_dim=D).train()
        model = DDP(SlotTerm(term))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        k_present = torch.tensor([[True, True, False, False], [True, True, False, False]])
        # step 0: no query on rank 0; step 1: one query on rank 0; step 2: both ranks have queries
        rank0 = [[[2, 3], [2, 3]], [[0, 3], [2, 3]], [[0, 1], [0, 1]]]
        losses = []
        for step in range(3):
            g = torch.Generator().manual_seed(10 * step + rank)
            q_slots = torch.randn(2, K, D, generator=g).requires_grad_()
            k_slots = torch.randn(2, K, D, generator=g)
            q_scores = scores_winning(rank0[step] if rank == 0 else [[0, 1], [0, 1]])
            loss = model(q_slots, q_scores, k_slots, k_present)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        torch.save(losses, f"{out}/losses_{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(run, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
    """
)


def test_two_processes_with_no_queries_on_one_rank_do_not_hang(tmp_path):
    import socket

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(port), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    l0, l1 = (torch.load(tmp_path / f"losses_{r}.pt") for r in (0, 1))
    # rank 0 contributes no query in steps 0 and 1 (with one query, unsynchronised BatchNorm cannot
    # normalise it), rank 1 always does; in step 2 both do
    assert l0[:2] == [0.0, 0.0]
    assert all(v > 0 for v in l1) and l0[2] > 0

"""Two CPU processes under torchrun (gloo) with a batch of 16 each give the same weights, to float tolerance, as one
process with a batch of 32.

Why they are comparable: `BatchIterator` gives rank r the r-th contiguous slice of the same global batch a single
process takes, and draws the augmentation (flip, crop offsets) for the whole global batch before slicing it, so the
ranks see exactly the single process's images; DDP averages the ranks' gradients, which (equal slices) is the
gradient of the mean loss over the global batch; both start from the same seeded weights. Only the order of the
float additions differs. BatchNorm would differ for a real reason (each rank normalises over its own slice), so
the exact comparison uses a network without BatchNorm, passed to `train(config, model=...)`; the same torchrun
also runs the `diffgrad_train` command line on the small ResNet (with BatchNorm) and checks that it completes with
both ranks in its checkpoint, and a 2-rank run interrupted on every rank and resumed ends bit-identical to the
uninterrupted one. 20-55 s on the shared 2-core dev machine."""
import json, os, subprocess, sys
from pathlib import Path
import torch, torch.nn as nn

WORKER = r'''
import sys, torch, torch.nn as nn, torch.distributed as dist
sys.path.insert(0, sys.argv[2])
from test_ddp import net, CONFIG
from diffgrad_nb.train import TrainConfig, ConfigError, train, main
out = sys.argv[1]
dist.init_process_group("gloo")
rank = dist.get_rank()
m = net()
s = train(TrainConfig(**CONFIG, batch_size=16, out_dir=f"{out}/ddp"), model=m)
assert s["status"] == "completed" and s["world_size"] == 2, s
torch.save(m.state_dict(), f"{out}/ddp_rank{rank}.pt")
# interrupted on every rank after global step 7 (checkpoints at 3, 4 = end of epoch 1, 6), then resumed
class Crash(Exception): pass
def crash(info):
    if info["global_step"] == 7: raise Crash()
try: train(TrainConfig(**CONFIG, batch_size=16, out_dir=f"{out}/ddp_resumed"), model=net(), on_step=crash); raise SystemExit("no crash")
except Crash: pass
m = net()
s = train(TrainConfig(**CONFIG, batch_size=16, out_dir=f"{out}/ddp_resumed"), model=m)
assert s["resumed_from"] == dict(epoch=1, step=2), s["resumed_from"]
torch.save(m.state_dict(), f"{out}/ddp_resumed_rank{rank}.pt")
try: train(TrainConfig(**CONFIG, batch_size=16, train_limit=20, out_dir=f"{out}/too_few")); raise SystemExit("accepted")
except ConfigError as e: assert "2 process(es) x 16 is more than the 20 training images" in str(e), e
main(["--model", "small", "--dataset", "fake", "--epochs", "2", "--batch_size", "8", "--max_steps_per_epoch", "3",
      "--test_limit", "40", "--checkpoint_every_steps", "2", "--no-progress", "--out_dir", f"{out}/cli"])
dist.destroy_process_group()
'''

CONFIG = dict(model="small", dataset="fake", epochs=2, max_steps_per_epoch=4, test_limit=64, optimizer="diffgrad",
              augment=True, checkpoint_every_steps=3, progress=False, seed=3)

def net():
    "a small CNN without BatchNorm, the same seeded weights in every process"
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(8*8*8, 10))

def test_two_gloo_processes_equal_one_process_on_the_combined_batch(tmp_path):
    from diffgrad_nb.train import TrainConfig, train
    (tmp_path/'worker.py').write_text(WORKER)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path/'worker.py'), str(tmp_path), str(Path(__file__).parent)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'torchrun failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}'

    m = net()   # one process, global batch 32 (this pytest process has no WORLD_SIZE)
    single = train(TrainConfig(**CONFIG, batch_size=32, out_dir=str(tmp_path/'single')), model=m)
    assert single['world_size'] == 1 and single['status'] == 'completed'
    w0, w1 = torch.load(tmp_path/'ddp_rank0.pt', weights_only=True), torch.load(tmp_path/'ddp_rank1.pt', weights_only=True)
    r0, r1 = torch.load(tmp_path/'ddp_resumed_rank0.pt', weights_only=True), torch.load(tmp_path/'ddp_resumed_rank1.pt', weights_only=True)
    for k, v in m.state_dict().items():
        assert torch.equal(w0[k], w1[k]), f'{k}: the two ranks disagree'
        assert torch.equal(r0[k], w0[k]) and torch.equal(r1[k], w0[k]), f'{k}: the interrupted and resumed 2-rank run differs'
        assert not torch.equal(v, net().state_dict()[k]), f'{k} did not train'
        torch.testing.assert_close(w0[k], v, rtol=1e-4, atol=1e-6, msg=lambda s: f'{k}: 2 ranks vs 1 process: {s}')
    ddp = json.loads((tmp_path/'ddp'/'summary.json').read_text())
    assert abs(ddp['final_train_loss'] - single['final_train_loss']) < 1e-5
    rows = lambda p: [json.loads(l) for l in (p/'metrics.jsonl').read_text().splitlines()]
    assert [x['test_acc'] for x in rows(tmp_path/'ddp')] == [x['test_acc'] for x in rows(tmp_path/'single')]
    assert [x['images'] for x in rows(tmp_path/'ddp')] == [4*32, 4*32]
    untimed = lambda p: [{k: v for k, v in x.items() if not k.endswith('_s')} for x in rows(p)]
    assert untimed(tmp_path/'ddp_resumed') == untimed(tmp_path/'ddp')   # per-rank partial sums restored too

    cli = json.loads((tmp_path/'cli'/'summary.json').read_text())
    assert cli['status'] == 'completed' and cli['world_size'] == 2 and cli['epochs_done'] == 2
    ck = torch.load(tmp_path/'cli'/'checkpoint.pt', weights_only=True)
    assert ck['world_size'] == 2 and len(ck['ranks']) == 2 and len(rows(tmp_path/'cli')) == 2

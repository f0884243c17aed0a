"""One training process: executes its ops of the current plan, generation after generation.

The controller (outside the workers) owns the TCPStore and publishes generations. A worker builds
gloo groups on a `PrefixStore` per generation, restores state (peer transfers or a checkpoint),
runs 1F1B steps in the order the estimator's graph gave, all-reduces gradients in DSATUR rounds,
votes `ready`, applies Adam only on the controller's `commit`, and abandons every blocking wait
as soon as a newer generation appears (gloo send/recv cannot be polled, so waits run in daemon
threads and the main thread watches the generation).

Run as `python -m odyssey.worker CONFIG.json RANK PORT`.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import threading
import time
import warnings

import torch
import torch.distributed as dist

from .data import ByteDataset, load_text, micro_batch_ids
from .faults import Fault, Injector
from .groups import dsatur_rounds, owner_groups
from .layout import Plan
from .model import Adam, GPTConfig, build_module, sample_loss_sum

warnings.filterwarnings("ignore")


class Abandon(Exception):
    """A newer generation was published: drop the current step."""


def _tag(kind: str, p: int, s: int, m: int) -> int:
    return (((0 if kind == "F" else 1) * 64 + p) * 64 + s) * 4096 + m


class Worker:
    def __init__(self, cfg: dict, rank: int, port: int) -> None:
        self.cfg, self.rank = cfg, rank
        self.gpt = GPTConfig(**cfg["model"])
        self.dtype = self.gpt.torch_dtype()
        timeout = datetime.timedelta(seconds=cfg.get("op_timeout_s", 60))
        self.store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timeout)
        self.timeout = timeout
        self.data = ByteDataset(load_text(cfg.get("data")), self.gpt.seq_len, cfg["seed"])
        self.injector = Injector([Fault(**f) for f in cfg["faults"]], rank, cfg["run_dir"])
        self.adam = Adam(lr=cfg["lr"])
        self.mods: dict[int, torch.nn.Module] = {}
        self.opt_m: dict[int, list[torch.Tensor]] = {}
        self.opt_v: dict[int, list[torch.Tensor]] = {}
        self.gen = -1
        self.ema_f: dict[int, float] = {}
        self.ema_b: dict[int, float] = {}
        self.graveyard: list = []
        self.warm = False  # old groups with stuck work: never destroyed (would block)
        self.pending_ckpt: list = []
        if cfg.get("ckpt_every"):
            import torch.distributed.checkpoint  # noqa: F401 - slow first import, not inside a step
        threading.Thread(target=self._heartbeat, args=(port,), daemon=True).start()

    # -- plumbing ------------------------------------------------------------------------------
    def _heartbeat(self, port: int) -> None:
        store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=self.timeout)
        while True:
            store.set(f"hb/{self.rank}", repr(time.time()))
            time.sleep(self.cfg["heartbeat_s"])

    def current_gen(self) -> int:
        return int(self.store.get("gen")) if self.store.check(["gen"]) else -1

    def wait_work(self, work) -> None:
        """Wait on gloo work in a daemon thread; raise Abandon if a newer generation appears."""
        done = threading.Event()
        err: list = []

        def run():
            try:
                work.wait()
            except Exception as e:  # noqa: BLE001 - reported to the main thread
                err.append(e)
            done.set()

        threading.Thread(target=run, daemon=True).start()
        last = time.perf_counter()
        while not done.wait(0.002):
            if time.perf_counter() - last > 0.02:
                last = time.perf_counter()
                if self.current_gen() != self.gen:
                    raise Abandon()
        if err:
            self._await_new_gen()
            raise Abandon()

    def _await_new_gen(self) -> None:
        """A peer died under us: wait until the controller announces the next generation."""
        while self.current_gen() == self.gen:
            time.sleep(0.005)

    def wait_key(self, key: str) -> str:
        while True:
            if self.store.check([key]):
                return self.store.get(key).decode()
            if self.current_gen() != self.gen:
                raise Abandon()
            time.sleep(0.001)

    # -- state -----------------------------------------------------------------------------
    def ensure_module(self, i: int) -> None:
        if i not in self.mods:
            mod = build_module(self.gpt, i, self.cfg["seed"])
            self.mods[i] = mod
            self.opt_m[i] = [torch.zeros_like(p) for p in mod.parameters()]
            self.opt_v[i] = [torch.zeros_like(p) for p in mod.parameters()]

    def pack(self, i: int) -> torch.Tensor:
        ps = [p.detach() for p in self.mods[i].parameters()]
        return torch.cat([t.reshape(-1) for t in ps + self.opt_m[i] + self.opt_v[i]])

    def unpack(self, i: int, flat: torch.Tensor) -> None:
        self.ensure_module(i)
        tensors = [p.data for p in self.mods[i].parameters()] + self.opt_m[i] + self.opt_v[i]
        off = 0
        for t in tensors:
            t.copy_(flat[off:off + t.numel()].view_as(t))
            off += t.numel()

    def state_dict(self, mods: list[int]) -> dict[str, torch.Tensor]:
        sd = {}
        for i in mods:
            for k, (name, p) in enumerate(self.mods[i].named_parameters()):
                sd[f"m{i}.{name}"] = p.detach()
                sd[f"m{i}.{name}.exp_avg"] = self.opt_m[i][k]
                sd[f"m{i}.{name}.exp_avg_sq"] = self.opt_v[i][k]
        return sd

    # -- generations -------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            g = self._next_generation()
            if g is None:
                return
            try:
                self._run_generation(g)
            except Abandon:
                continue

    def _next_generation(self) -> dict | None:
        while True:
            if self.store.check(["stop"]):
                return None
            g = self.current_gen()
            if g > self.gen:
                self.gen = g
                msg = json.loads(self.store.get(f"plan/{g}"))
                if self.rank in msg["members"]:
                    return msg
            time.sleep(0.005)

    def _group(self, name: str, members: list[int]):
        store = dist.PrefixStore(f"g{self.gen}/{name}/", self.store)
        return dist.ProcessGroupGloo(store, members.index(self.rank), len(members), self.timeout)

    def _run_generation(self, msg: dict) -> None:
        t0 = time.perf_counter()
        self.plan = Plan.from_dict(msg["plan"])
        members = msg["members"]
        self.world = self._group("world", members)
        self.widx = {r: i for i, r in enumerate(members)}
        groups = owner_groups(self.plan)
        self.rounds = dsatur_rounds(list(groups))
        self.group_mods = groups
        self.pgs = {g: self._group("own-" + "-".join(map(str, g)), list(g))
                    for rnd in self.rounds for g in rnd if self.rank in g}
        self.graveyard.append((self.world, self.pgs))
        mine = self.plan.modules_of(self.rank)
        if msg.get("restore"):
            self._load_checkpoint(msg["restore"], mine)
        else:
            self._transfer(msg.get("transfers", []), mine)
        for i in list(self.mods):
            if i not in mine:
                del self.mods[i], self.opt_m[i], self.opt_v[i]
        if msg.get("calibrate") and len(members) > 1 and self.rank in members[:2]:
            self._calibrate(members)
        self.order = [tuple(op) for op in msg["orders"].get(str(self.rank), [])]
        if msg.get("calibrate"):  # group build time once everyone is up: the rebuild estimate
            a = time.perf_counter()
            self.graveyard.append(self._group("probe", members))
            self.store.set(f"rebuild/{self.rank}", repr(time.perf_counter() - a))
        self.store.set(f"joined/{self.gen}/{self.rank}", repr(time.perf_counter() - t0))
        for k, step in enumerate(range(msg["start_step"], self.cfg["steps"])):
            self.warm = k == 0 and not self.ema_f
            self._step(step)
        import hashlib

        hashes = {i: hashlib.sha256(self.pack(i)[:sum(p.numel() for p in self.mods[i].parameters())]
                                    .numpy().tobytes()).hexdigest() for i in self.mods}
        self.store.set(f"finished/{self.gen}/{self.rank}", json.dumps(hashes))
        self._await_new_gen_or_stop()

    def _await_new_gen_or_stop(self) -> None:
        while not self.store.check(["stop"]) and self.current_gen() == self.gen:
            self._poll_checkpoints()
            time.sleep(0.01)
        self._drain_checkpoints()

    def _transfer(self, moves: list[list[int]], mine: list[int]) -> None:
        """[(dst, module, src)] over the new world group: sources keep state until done."""
        works, recvs = [], []
        for dst, mod, src in moves:
            if src == self.rank:
                works.append(self.world.send([self.pack(mod)], self.widx[dst], mod))
            elif dst == self.rank:
                self.ensure_module(mod)
                buf = torch.empty_like(self.pack(mod))
                recvs.append((mod, buf))
                works.append(self.world.recv([buf], self.widx[src], mod))
        for w in works:
            self.wait_work(w)
        for mod, buf in recvs:
            self.unpack(mod, buf)
        for i in mine:
            self.ensure_module(i)

    def _load_checkpoint(self, restore: dict, mine: list[int]) -> None:
        import torch.distributed.checkpoint as dcp

        for i in mine:
            self.mods.pop(i, None)
            self.ensure_module(i)
        by_dir: dict[str, list[int]] = {}
        for i in mine:
            by_dir.setdefault(restore["modules"][str(i)], []).append(i)
        for path, mods in sorted(by_dir.items()):
            sd = self.state_dict(mods)
            dcp.load(sd, checkpoint_id=path)

    def _calibrate(self, members: list[int]) -> None:
        """Alpha-beta link model from a ping-pong with the next member (reported to the store)."""
        first = self.rank == members[0]
        peer = self.widx[members[1] if first else members[0]]
        out = {}
        for name, n in (("small", 1), ("big", 1 << 18)):
            t = torch.zeros(n, dtype=torch.float64)
            times = []
            for _ in range(5):
                a = time.perf_counter()
                if first:
                    self.wait_work(self.world.send([t], peer, 7))
                    self.wait_work(self.world.recv([t], peer, 8))
                else:
                    self.wait_work(self.world.recv([t], peer, 7))
                    self.wait_work(self.world.send([t], peer, 8))
                times.append((time.perf_counter() - a) / 2)
            out[name] = (sorted(times)[2], n * 8)
        alpha = out["small"][0]
        beta = max(out["big"][0] - alpha, 1e-12) / out["big"][1]
        if first:
            self.store.set("calib", json.dumps({"alpha": alpha, "beta": beta}))

    # -- one step ------------------------------------------------------------------------------
    def _step(self, step: int) -> None:
        cfg = self.cfg
        B, M = cfg["global_batch"], cfg["micro_batches"]
        for mod in self.mods.values():
            for p in mod.parameters():
                p.grad = None
        saved: dict = {}
        sends = []
        loss_sum = 0.0
        fired = False
        for kind, p, s, m in self.order:
            pipe = self.plan.pipelines[p]
            st = pipe[s]
            ids = micro_batch_ids(step, B, M, m)
            last = s == len(pipe) - 1
            if kind == "F":
                if s == 0:
                    x, _ = self.data.batch(ids)
                else:
                    x = torch.empty(len(ids), self.gpt.seq_len, self.gpt.d_model, dtype=self.dtype)
                    self.wait_work(self.world.recv([x], self.widx[self.plan.rank_of(p, s - 1, m)], _tag("F", p, s, m)))
                chain = []
                for i in st.modules:
                    inp = x.detach().requires_grad_(x.is_floating_point())
                    a = time.perf_counter()
                    out = self.mods[i](inp)
                    if last and i == st.hi - 1:
                        out = sample_loss_sum(out, self.data.batch(ids)[1])
                    self._ema(self.ema_f, i, time.perf_counter() - a, len(ids))
                    chain.append((i, inp, out))
                    x = out
                saved[(p, s, m)] = chain
                if last:
                    loss_sum += float(x.detach())
                else:
                    dst = self.widx[self.plan.rank_of(p, s + 1, m)]
                    sends.append(self.world.send([x.detach().contiguous()], dst, _tag("F", p, s + 1, m)))
            else:
                if not fired:
                    fired = True
                    self.injector.maybe_fire(step, self._announce_fault)
                chain = saved.pop((p, s, m))
                if last:
                    grad = torch.ones((), dtype=self.dtype)
                else:
                    grad = torch.empty_like(chain[-1][2])
                    src = self.widx[self.plan.rank_of(p, s + 1, m)]
                    self.wait_work(self.world.recv([grad], src, _tag("B", p, s, m)))
                for i, inp, out in reversed(chain):
                    a = time.perf_counter()
                    out.backward(grad)
                    self._ema(self.ema_b, i, time.perf_counter() - a, len(ids))
                    grad = inp.grad
                if s > 0:
                    dst = self.widx[self.plan.rank_of(p, s - 1, m)]
                    sends.append(self.world.send([grad.contiguous()], dst, _tag("B", p, s - 1, m)))
        for w in sends:
            self.wait_work(w)
        self._allreduce()
        prof = {"f": self.ema_f, "b": self.ema_b}
        self.store.set(f"ready/{self.gen}/{step}/{self.rank}", json.dumps({"loss_sum": loss_sum, "prof": prof}))
        # the vote: apply only on the controller's commit (a failure before it redoes the step)
        while True:
            if self.store.check([f"commit/{step}"]) and self.store.get(f"commit/{step}").decode() == str(self.gen):
                break
            if self.current_gen() != self.gen:
                raise Abandon()
            self._poll_checkpoints()
            time.sleep(0.0005)
        for i in sorted(self.mods):
            params = list(self.mods[i].parameters())
            self.adam.step(params, self.opt_m[i], self.opt_v[i], step + 1)
        self.store.set(f"applied/{self.gen}/{step}/{self.rank}", "1")
        self._poll_checkpoints()
        every = cfg.get("ckpt_every") or 0
        if every and (step + 1) % every == 0:
            self._checkpoint(step + 1)

    def _announce_fault(self, f: Fault) -> None:
        self.store.set(f"fault_at/{self.rank}", json.dumps({"t": time.time(), "kind": f.kind, "step": f.step}))

    def _ema(self, table: dict, i: int, dt: float, n: int) -> None:
        """Per-sample EMA; the first step of a generation is warm-up and not recorded."""
        if self.warm:
            return
        v = dt / max(n, 1)
        table[i] = v if i not in table else 0.7 * table[i] + 0.3 * v

    def _allreduce(self) -> None:
        B = self.cfg["global_batch"]
        for rnd in self.rounds:
            for g in rnd:
                if self.rank not in g:
                    continue
                grads = [p.grad if p.grad is not None else torch.zeros_like(p)
                         for i in self.group_mods[g] for p in self.mods[i].parameters()]
                flat = torch.cat([t.reshape(-1) for t in grads])
                self.wait_work(self.pgs[g].allreduce([flat]))
                off = 0
                for i in self.group_mods[g]:
                    for p in self.mods[i].parameters():
                        p.grad = flat[off:off + p.numel()].view_as(p).clone()
                        off += p.numel()
        for mod in self.mods.values():
            for p in mod.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.div_(B)

    # -- checkpoints ---------------------------------------------------------------------------
    def _checkpoint(self, step: int) -> None:
        """Save the modules this rank is the primary owner of (lowest rank holding them)."""
        import torch.distributed.checkpoint as dcp

        owners = self.plan.owners()
        mods = [i for i in sorted(self.mods) if owners[i][0] == self.rank]
        path = os.path.join(self.cfg["ckpt_dir"], f"step-{step}", f"rank-{self.rank}")
        a = time.perf_counter()
        if self.cfg.get("ckpt_mode", "async") == "sync":
            dcp.save(self.state_dict(mods), checkpoint_id=path)
            fut = None
        else:
            fut = dcp.async_save(self.state_dict(mods), checkpoint_id=path)
        blocking = time.perf_counter() - a
        self.pending_ckpt.append((step, fut, a, blocking, mods, path))
        self._poll_checkpoints()

    def _poll_checkpoints(self) -> None:
        keep = []
        for step, fut, a, blocking, mods, path in self.pending_ckpt:
            if fut is None or fut.done():
                if fut is not None:
                    fut.result()
                rep = {"blocking_s": blocking, "total_s": time.perf_counter() - a, "modules": mods, "path": path}
                self.store.set(f"ckpt/{step}/{self.rank}", json.dumps(rep))
            else:
                keep.append((step, fut, a, blocking, mods, path))
        self.pending_ckpt = keep

    def _drain_checkpoints(self) -> None:
        for _, fut, *_ in self.pending_ckpt:
            if fut is not None:
                fut.result()
        self._poll_checkpoints()


def main(argv: list[str]) -> None:
    cfg = json.loads(open(argv[0]).read())
    torch.set_num_threads(cfg.get("threads", 1))
    Worker(cfg, int(argv[1]), int(argv[2])).run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # daemon threads may sit in abandoned gloo work


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python
"""Populations: K members of 784-128-10 trained in one compiled program (vmap over the
training state) against K models trained one after another.

Adam, batch 128, float32, synthetic MNIST-shaped data; one timed call is one epoch of the
whole population, interleaved with one epoch of a single model. Sequential time is K
times the single model's epoch measured in the same rounds (K fits of one model run K
copies of that same program). Reports examples/s per member and the speedup.
"""

from __future__ import annotations

import _common as C


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--members", default="1,4,16,64", help="comma list of population sizes K")
    p.add_argument("--examples", type=int, default=12800, help="examples per member-epoch")
    p.add_argument("--sizes", default="784,128,10", help="layer sizes")
    args = p.parse_args(argv)
    import jax
    import numpy as np

    import fnmlp
    from fnmlp.population import grid, make_population
    from fnmlp.train import init_state, make_trainer

    ks = [int(k) for k in args.members.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    n, batch = args.examples, 128
    if args.quick:
        ks, n, args.reps, sizes = [1, 2], 512, 1, [784, 32, 10]
    info = C.machine()
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.random((n, sizes[0]), np.float32))
    y = jax.numpy.asarray(rng.integers(0, sizes[-1], n).astype(np.int32))
    model = fnmlp.mlp(sizes, "relu")
    trainer = make_trainer(model, fnmlp.adam(1e-3), batch)
    single = {"state": init_state(model.init_params(jax.random.key(0)), fnmlp.adam(1e-3))}
    key = jax.random.key(0)

    def run_single():
        single["state"], m = trainer.epoch(single["state"], x, y, key)
        jax.block_until_ready(m)

    rows = []
    for k in ks:
        members = grid(lr=list(np.geomspace(1e-4, 1e-2, k)), seed=[0])
        pop = make_population(model, None, members, batch_size=batch, optimizer="adam")
        box = {"state": pop.state}

        def run_pop(pop=pop, box=box):
            box["state"], m = pop.epoch(box["state"], x, y, pop.seeds, pop.base_lr)
            jax.block_until_ready(m)

        t0 = C.timed(run_pop)  # the first call compiles
        times = C.interleaved({"population": run_pop, "single": run_single}, args.reps,
                                  C.settle(args))
        times.pop("__warmup__")
        t_pop, t_one = C.median(times["population"]), C.median(times["single"])
        steps = n // batch
        rows.append({"members": k, "sizes": sizes, "population_epoch_s": t_pop,
                     "single_epoch_s": t_one, "sequential_epoch_s": k * t_one,
                     "per_member_examples_per_s": steps * batch / t_pop,
                     "all_members_examples_per_s": k * steps * batch / t_pop,
                     "speedup": k * t_one / t_pop, "compile_s": t0,
                     "spread": max(C.spread(times["population"]), C.spread(times["single"]))})
    md = C.table(rows, [("members", "K", ""), ("population_epoch_s", "population epoch s", ".3f"),
                        ("sequential_epoch_s", "K x one model s", ".3f"),
                        ("speedup", "speedup", ".2f"),
                        ("all_members_examples_per_s", "examples/s, all members", ",.0f"),
                        ("per_member_examples_per_s", "examples/s per member", ",.0f"),
                        ("compile_s", "first call s", ".2f"), ("spread", "spread", ".2f")])
    md += (f"\n\n{'-'.join(map(str, sizes))}, Adam, batch {batch}, {n} examples per member"
           f" per epoch; medians of {args.reps} interleaved rounds; 'first call' includes"
           " compiling the population epoch.")
    return C.emit(args, "populations", info, rows, md)


if __name__ == "__main__":
    main()

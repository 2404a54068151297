"""Run one deterministic training in a subprocess (used by the kill-and-resume test)."""
import json
import sys

from xfer_utils.phases import env, runs
from xfer_utils import models, train


def main(world: str, ckpt: str, out: str) -> None:
    env.setup(1)
    from transformers import AutoTokenizer
    model = f"{world}/models/tiny-xlmr-s"
    tok = AutoTokenizer.from_pretrained(model)
    td = runs._task_data("mnli", "en", tok, f"{world}/data", 160, 48, 1, 64)
    net, _ = models.build(model, runs._heads([td], tok), seed=1)
    cfg = train.TrainConfig(lr=3e-3, epochs=6, batch_size=16, eval_every=10, patience=0, checkpoint_every=3, seed=1)
    res = train.train(net, tok, [td], cfg, ckpt, progress=False)
    weights = {k: v.flatten()[:64].tolist() for k, v in net.state_dict().items()}
    json.dump({"best_score": res.best_score, "best_step": res.best_step, "weights": weights}, open(out, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:4])

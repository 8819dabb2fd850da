"""mixzoo mixers in timm models, end to end on a CPU (no download).

    python examples/timm_example.py [--steps 200] [--mixer deltanet] [--pretrained]

1. `import mixzoo` registers mixzoo ViTs with timm: `timm.create_model("mixzoo_...")`.
2. `mixzoo.timm_attn("gla")` is an `attn_layer=` class for any timm ViT.
3. `mixzoo.swap_mixers(vit, "deltanet", init_from_attention=True)` converts an existing
   (with --pretrained: pretrained, downloaded by timm) ViT in place.
4. A short training run of a mixzoo ViT on the synthetic `image_match` task (two marked
   patches far apart: do they hold the same pattern?), with a plain PyTorch loop; timm's
   own train.py works the same way with `--model mixzoo_deltanet_vit_small_patch16_224`.
"""
from __future__ import annotations

import argparse
import time

import torch

import mixzoo  # noqa: F401  (before timm: registers the mixzoo_* models on timm's import)
import timm
from mixzoo.tasks import build_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--mixer", default="deltanet", help="any registered mixer")
    ap.add_argument("--pretrained", action="store_true", help="convert a pretrained ViT-Ti")
    args = ap.parse_args()
    torch.manual_seed(0)

    print("mixzoo timm models:", timm.list_models("mixzoo_*"))

    # 2. any mixer as timm's attention layer
    attn = mixzoo.timm_attn("gla", causal=False)
    vit = timm.create_model("vit_tiny_patch16_224", attn_layer=attn, img_size=64, depth=2)
    y = vit(torch.randn(1, 3, 64, 64))
    print("attn_layer=", type(vit.blocks[0].attn).__name__, tuple(y.shape))

    # 3. convert an existing ViT in place (q/k/v/o start from its qkv/proj)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=args.pretrained)
    mixzoo.swap_mixers(vit, args.mixer, layers="all", init_from_attention=True)
    print("swapped:", sum(type(b.attn).__name__.startswith("MixerAttention") for b in vit.blocks),
          "of", len(vit.blocks), "blocks now run", args.mixer)

    # 4. train a small mixzoo ViT on the synthetic long-range image task
    task = build_task("image_match")          # 16 px, 4 px patches (see its "Difficulty")
    model = timm.create_model("mixzoo_deltanet_vit_tiny_patch16_224", img_size=16, patch_size=4,
                              embed_dim=64, depth=4, num_heads=2, num_classes=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    test = task.sample(512, torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = task.sample(64, gen)
        _, loss = task.logits_and_loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                acc = task.metric(model(test[0]), test[1])["accuracy"]
            model.train()
            print(f"step {step}: loss {loss.item():.3f}  held-out accuracy {acc:.3f} "
                  f"(chance 0.5)  {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()

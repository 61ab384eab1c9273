"""Time the processor's encoding against its raw parts, measured side by side in one run.

Training encodes one sample at a time (``encode_conversations`` with one conversation, as
``aki.data.batching.encode_sample`` does) and generation encodes prompt batches (``__call__``).
For each the script times, in the same run:

- the whole processor call;
- the raw parts it cannot avoid: the fast tokenizer on the rendered text, and the image transform
  alone (``processor.image_processor`` on the same images);

and prints the processor's overhead as a ratio to those parts. Times are this process's CPU time
by default (``--clock wall`` for elapsed time), best of the repeats, one torch thread. Images are 640x480 RGB photos
resized to 384 (the paper's tower); the tokenizer is the tiny phi3 one (so the tokenizer part
is small and the overhead ratio is an upper bound for real tokenizers).

Usage::

    python benchmarks/bench_processor.py                # 200 samples, batch 8
    python benchmarks/bench_processor.py --samples 500 --batch 16 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from PIL import Image


def _timed(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: this process's CPU time (robust on a shared machine); wall: elapsed time")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    import aki.processing as processing
    from aki.processing import AkiProcessor, build_tiny_tokenizer

    if hasattr(processing, "siglip_image_processor"):  # SigLIP's processor, PIL backend
        image_processor = processing.siglip_image_processor(args.image_size)
    else:  # aki before 0.2 (to compare with): its own image processor
        image_processor = processing.AkiImageProcessor(size=args.image_size)
    proc = AkiProcessor(image_processor=image_processor, tokenizer=build_tiny_tokenizer("phi3"),
                        num_image_tokens=144, family="phi3")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(8)]
    convs = []
    for k in range(args.samples):
        question = f"What is the color of object number {k} in the picture? Answer briefly."
        answer = f"The object number {k} is red and sits to the left of a blue sphere."
        convs.append([
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ])
    sample_images = [[images[k % len(images)]] for k in range(args.samples)]
    texts = proc.apply_chat_template(convs, add_generation_prompt=False)

    def train_encode():
        for conv, ims in zip(convs, sample_images, strict=True):
            proc.encode_conversations([conv], [ims], padding_side="right", max_length=512)

    def train_text_only():  # the same, images left out: the text path alone
        for conv in convs:
            proc.encode_conversations([[{"role": m["role"], "content": [c for c in m["content"] if c["type"] == "text"]}
                                        for m in conv]], padding_side="right", max_length=512)

    def tokenizer_only():
        for t in texts:
            proc.tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)

    def images_only():
        for ims in sample_images:
            image_processor(ims, return_tensors="pt") if hasattr(processing, "siglip_image_processor") \
                else image_processor(ims)

    prompts = proc.apply_chat_template([c[:1] for c in convs], add_generation_prompt=True)
    batches = [(prompts[i:i + args.batch], sample_images[i:i + args.batch])
               for i in range(0, len(prompts), args.batch)]

    def generate_encode():
        for p, ims in batches:
            proc(text=p, images=ims)

    rows = {
        "encode_conversations, 1 sample per call (training)": _timed(train_encode, args.repeats, clock),
        "  the same without images (text path only)": _timed(train_text_only, args.repeats, clock),
        "  raw tokenizer on the rendered texts": _timed(tokenizer_only, args.repeats, clock),
        "  raw image transform on the same images": _timed(images_only, args.repeats, clock),
        f"__call__ on prompt batches of {args.batch} (generation)": _timed(generate_encode, args.repeats, clock),
    }
    n = args.samples
    print(f"{n} samples, best of {args.repeats} runs ({args.clock} ms per sample, 1 torch thread)")
    for name, seconds in rows.items():
        print(f"{name:<60} {1000 * seconds / n:8.3f}")
    text_overhead = rows["  the same without images (text path only)"] / rows["  raw tokenizer on the rendered texts"]
    total = rows["encode_conversations, 1 sample per call (training)"]
    parts = rows["  raw tokenizer on the rendered texts"] + rows["  raw image transform on the same images"]
    print(f"text path / raw tokenizer: {text_overhead:.2f}x;  training encode / (tokenizer + images): "
          f"{total / parts:.2f}x")


if __name__ == "__main__":
    main()

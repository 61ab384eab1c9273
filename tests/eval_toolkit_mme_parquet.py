"""Writes a tiny MME parquet in the lmms-lab/MME layout (with datasets Image features); run in the toolkit venv."""

import sys

from datasets import Dataset, Features, Value
from datasets import Image as HFImage
from PIL import Image

out = sys.argv[1]
rows = {"question_id": [], "question": [], "answer": [], "category": [], "image": []}
cols = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
k = 0
for cat in ("existence", "count", "code_reasoning"):
    for img in range(2):
        for ans in ("Yes", "No"):
            rows["question_id"].append(f"{cat}/{img}.png")
            rows["question"].append(f"Is there a thing {k}? Please answer yes or no.")
            rows["answer"].append(ans)
            rows["category"].append(cat)
            rows["image"].append(Image.new("RGB", (24, 24), cols[k % 4]))
            k += 1
feats = Features({"question_id": Value("string"), "question": Value("string"), "answer": Value("string"),
                  "category": Value("string"), "image": HFImage()})
Dataset.from_dict(rows, features=feats).to_parquet(out)

"""Training data: the ``Sample`` record, readers for every format the paper trains on, the
weighted mixture sampler, input-order helpers, label-safe augmentation, batching (padding /
packing) and the DataLoader stream of training steps."""

from aki.data.augment import augment_sample, hflip, mirror_text, plan_augment, random_resized_crop
from aki.data.batching import (
    Encoded,
    collate,
    count_trained,
    encode_sample,
    micro_batches,
    non_pad_fraction,
    pack,
)
from aki.data.boxes import find_bboxes, format_bbox
from aki.data.loader import DataCounters, SkipRateError, StepStream, StreamOptions, make_loader
from aki.data.mixture import MixtureSampler
from aki.data.order import ORDERS, order_at, reorder_messages
from aki.data.readers import RecordSource, llava_conversations, pt_jsonl, pt_shards, sft_llava
from aki.data.records import BadRecord, Sample, load_image
from aki.data.tasks import (
    FORMATS,
    TABLE5_WEIGHTS,
    aokvqa,
    bbox_text,
    gqa,
    llava150k,
    ocrvqa,
    refcoco,
    scienceqa,
    visual_genome,
    vqav2,
    vsr,
)

__all__ = [
    "FORMATS",
    "ORDERS",
    "TABLE5_WEIGHTS",
    "BadRecord",
    "DataCounters",
    "Encoded",
    "MixtureSampler",
    "RecordSource",
    "Sample",
    "SkipRateError",
    "StepStream",
    "StreamOptions",
    "aokvqa",
    "augment_sample",
    "bbox_text",
    "collate",
    "count_trained",
    "encode_sample",
    "find_bboxes",
    "format_bbox",
    "gqa",
    "hflip",
    "llava150k",
    "llava_conversations",
    "load_image",
    "make_loader",
    "micro_batches",
    "mirror_text",
    "non_pad_fraction",
    "ocrvqa",
    "order_at",
    "pack",
    "plan_augment",
    "pt_jsonl",
    "pt_shards",
    "random_resized_crop",
    "refcoco",
    "reorder_messages",
    "scienceqa",
    "sft_llava",
    "visual_genome",
    "vqav2",
    "vsr",
]

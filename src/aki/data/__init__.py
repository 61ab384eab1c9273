"""Training data: the ``Sample`` record, readers for every format the paper trains on, the
weighted mixture sampler, input-order helpers, augmentation, and batching (padding / packing)."""

from aki.data.augment import augment, hflip, random_resized_crop
from aki.data.batching import Encoded, collate, count_trained, encode_sample, non_pad_fraction, pack
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
    "Encoded",
    "MixtureSampler",
    "RecordSource",
    "Sample",
    "aokvqa",
    "augment",
    "bbox_text",
    "collate",
    "count_trained",
    "encode_sample",
    "gqa",
    "hflip",
    "llava150k",
    "llava_conversations",
    "load_image",
    "non_pad_fraction",
    "ocrvqa",
    "order_at",
    "pack",
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

"""Loads the fixture metadata into scalecodec (the independent SCALE library the tests judge us by)."""
import json
import os

from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "Fixtures")
META_PATH = os.path.join(FIXTURES, "chainMeta.json")


def load(path=META_PATH):
    with open(path) as f:
        meta_hex = json.load(f)["result"]
    rc = RuntimeConfigurationObject(implements_scale_info=True, ss58_format=42)
    rc.update_type_registry(load_type_registry_preset("core"))
    md = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(meta_hex))
    md.decode()
    rc.add_portable_registry(md)
    return rc, md, meta_hex


def encode(rc, md, type_string, value):
    obj = rc.create_scale_object(type_string, metadata=md)
    return obj.encode(value).data


def decode(rc, md, type_string, data):
    obj = rc.create_scale_object(type_string, data=ScaleBytes(bytes(data)), metadata=md)
    return obj.decode()

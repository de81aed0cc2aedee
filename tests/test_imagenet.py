"""Tests for cnncli.imagenet: Keras' exact class-index file, and offline decoding."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from cnncli.model.imagenet import (
    KERAS_FILE_MD5,
    _class_index,
    class_index,
    class_names,
    resource_bytes,
)


def test_resource_is_keras_file_byte_for_byte():
    assert hashlib.md5(resource_bytes()).hexdigest() == KERAS_FILE_MD5


def test_resource_has_1000_entries_keyed_0_to_999():
    raw = json.loads(resource_bytes())
    assert sorted(raw, key=int) == [str(i) for i in range(1000)]


@pytest.mark.parametrize(
    ("number", "entry"),
    [
        (0, ("n01440764", "tench")),
        (408, ("n02704792", "amphibian")),
        (436, ("n02814533", "beach_wagon")),
        (479, ("n02974003", "car_wheel")),
        (511, ("n03100240", "convertible")),
        (817, ("n04285008", "sports_car")),
        (999, ("n15075141", "toilet_tissue")),
    ],
)
def test_known_classes_are_where_keras_has_them(number, entry):
    assert class_index()[number] == entry


def test_wordnet_ids_are_unique_and_sorted():
    ids = [wnid for wnid, _ in class_index()]
    assert len(set(ids)) == 1000 and ids == sorted(ids)


def test_class_names_follow_the_index():
    names = class_names()
    assert len(names) == 1000 and names[511] == "convertible"


def test_class_names_work_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("imagenet class names tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    _class_index.cache_clear()  # read the file again, with the network cut
    assert class_names()[817] == "sports_car"

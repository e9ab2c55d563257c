"""AAF files read without pyaaf2's object layer, for the timeline import (interchange/read.py).

pyaaf2 reads an AAF file object by object, each property through the file's metadictionary, at
about a fifth of a millisecond an object; the AAF adapter then copies every property of every
object it meets into OTIO's dictionaries, and clones and simplifies the tracks it builds with
them. The largest file the import accepts (5 MiB: about 1,240 clips as OTIO's writer writes
them, ten objects each) took 2.5 s. This module reads the compound file (MS-CFB) itself,
decodes only the properties the adapter's transcription uses, by their standard ids, and
transcribes the top-level composition as the adapter's `_transcribe` does, into the same OTIO
objects, with the metadata that the adapter's own later passes read (`_fix_transitions`,
`_attach_markers` and `_simplify`, which then run unchanged on the result).

It covers plain edits as editors and OTIO's writer write them: one top-level composition whose
timeline slots hold sequences (or timecode, pulldown, edge code, or an operation group over a
sequence) of source clips of master mobs (through their file and tape source mobs), fillers,
transitions and operation groups (speed, pan, gain, and other effects). Anything else (nested
compositions, selectors, essence groups, scopes, markers, a class the file defines itself, a mob
or definition it cannot resolve, a value it cannot decode) raises `Unsupported`, and the file is
read by pyaaf2 and the adapter as before: the same answer, at the adapter's speed.

No Django here: this module runs in the confined child that reads an upload.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterator
from typing import Any

import opentimelineio as otio
from aaf2.auid import AUID
from aaf2.mobid import MobID
from aaf2.model.classdefs import classdefs
from aaf2.rational import AAFRational

_adapter: Any = otio.adapters.from_name("AAF").module()

_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_NOSTREAM, _ENDOFCHAIN = 0xFFFFFFFF, 0xFFFFFFFE
# Stored forms of a property (pyaaf2.properties).
_DATA, _STRONG, _STRONG_VECTOR, _STRONG_SET, _WEAK = 0x82, 0x22, 0x32, 0x3A, 0x02

# Standard property ids (pyaaf2's model: aaf2/model/classdefs.py).
_HEADER, _CONTENT, _DICTIONARY = 0x0002, 0x3B03, 0x3B04
_MOBS = 0x1901
_OPERATION_DEFS, _PARAMETER_DEFS, _DATA_DEFS, _INTERPOLATION_DEFS = 0x2603, 0x2604, 0x2605, 0x2609
_IDENTIFICATION, _DEF_NAME, _IS_TIME_WARP = 0x1B01, 0x1B02, 0x1E02
_MOB_ID, _MOB_NAME, SLOTS, _USER_COMMENTS, _USAGE = 0x4401, 0x4402, 0x4403, 0x4406, 0x4408
_SLOT_ID, _SLOT_NAME, _SEGMENT, _TRACK_NUMBER, _EDIT_RATE = 0x4801, 0x4802, 0x4803, 0x4804, 0x4B01
_DATA_DEF, _LENGTH = 0x0201, 0x0202
_COMPONENTS, _SOURCE_ID, _SOURCE_SLOT, _START = 0x1001, 0x1101, 0x1102, 0x1201
_TRANSITION_GROUP, _CUT_POINT = 0x1801, 0x1802
_OPERATION, _INPUTS, _PARAMETERS, _RENDERING = 0x0B01, 0x0B02, 0x0B03, 0x0B05
_PARAMETER_DEF, _CONSTANT_VALUE, _INTERPOLATION, _POINTS = 0x4C01, 0x4D01, 0x4E01, 0x4E02
_POINT_VALUE, _POINT_TIME = 0x1A02, 0x1A03
_TC_START = 0x1501
_DESCRIPTOR, _LOCATORS, _URL = 0x4701, 0x2F01, 0x4001
_TAG_NAME, _TAG_VALUE = 0x5001, 0x5003

_CLASSES = {bytes(AUID(v[0]).bytes_le): name for name, v in classdefs.items()}
_PARENTS = {name: next((n for n, w in classdefs.items() if w[0] == v[1]), None) for name, v in classdefs.items()}
_TOP_LEVEL = bytes(AUID("0d010102-0101-0700-060e-2b3404010101").bytes_le)  # UsageCode Usage_TopLevel
# Typed values an indirect property holds (a constant's value, a control point's, a tagged value's).
_RATIONAL = bytes(AUID("03010100-0000-0000-060e-2b3401040101").bytes_le)
_STRING = bytes(AUID("01100200-0000-0000-060e-2b3401040101").bytes_le)
_INTEGERS = {bytes(AUID(f"0101{code}00-0000-0000-060e-2b3401040101").bytes_le): fmt for code, fmt in (
    ("01", "<B"), ("02", "<H"), ("03", "<I"), ("04", "<Q"), ("05", "<b"), ("06", "<h"), ("07", "<i"), ("08", "<q"))}


class Unsupported(Exception):
    """The file holds something this reader does not transcribe (or not as the adapter would):
    the adapter reads it."""


def is_a(cls: str | None, name: str) -> bool:
    """Whether `cls` (a standard class, by name) is `name` or derives from it."""
    while cls is not None:
        if cls == name:
            return True
        cls = _PARENTS.get(cls)
    return False


def _utf16(data: bytes) -> str:
    """A stored string as pyaaf2 decodes it (to its first NUL)."""
    return data.decode("utf-16le", "backslashreplace").split("\x00")[0]


# ----------------------------------------------------------------------------- the compound file


class _Compound:
    """An MS-CFB compound file: its directory, and its streams read whole."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 512 or data[:8] != _MAGIC:
            raise Unsupported("not a compound file")
        self.data = data
        byte_order, sector_shift, mini_shift = struct.unpack_from("<HHH", data, 0x1C)
        if byte_order != 0xFFFE or sector_shift not in (9, 12) or mini_shift != 6:
            raise Unsupported("an unusual compound file")
        (_, fat_sectors, dir_start, _, self.cutoff, minifat_start, minifat_sectors, difat_start,
         difat_sectors) = struct.unpack_from("<9I", data, 0x28)
        self.sector = 1 << sector_shift
        self.sectors = len(data) // self.sector - 1
        difat = list(struct.unpack_from("<109I", data, 0x4C))
        per = self.sector // 4 - 1
        at = difat_start
        for _ in range(difat_sectors):
            values = struct.unpack_from(f"<{per + 1}I", data, self._offset(at))
            difat.extend(values[:per])
            at = values[per]
        self.fat = array("I")
        for sector in difat[:fat_sectors]:
            offset = self._offset(sector)
            self.fat.frombytes(data[offset:offset + self.sector])
        self.directory = self._chain_bytes(dir_start, self.fat, self.sector, data, 1)
        self.count = len(self.directory) // 128
        if not self.count:
            raise Unsupported("no directory")
        # (entries decoded as they are reached: a file holds ten thousand, a reading needs a few)
        self.decoded: dict[int, tuple[str, int, int, int, int, bytes, int, int]] = {}
        root = self.entry(0)
        self.mini = self._chain_bytes(root[6], self.fat, self.sector, data, 1)[:root[7]]
        self.minifat = array("I")
        if minifat_sectors:
            self.minifat.frombytes(self._chain_bytes(minifat_start, self.fat, self.sector, data, 1))
        self.listed: dict[int, dict[str, int]] = {}

    def _offset(self, sector: int) -> int:
        if sector >= self.sectors:
            raise Unsupported("a sector past the end of the file")
        return (sector + 1) * self.sector

    def _chain_bytes(self, start: int, table: array[int], size: int, source: bytes, skip: int) -> bytes:
        """The sectors of a chain (`skip` 1: the file's, whose first sector is the header)."""
        parts: list[bytes] = []
        at = start
        while at != _ENDOFCHAIN:
            if at >= len(table) or len(parts) > len(table):
                raise Unsupported("a broken sector chain")
            offset = (at + skip) * size
            if offset + size > len(source):
                raise Unsupported("a sector past the end of the file")
            parts.append(source[offset:offset + size])
            at = table[at]
        return b"".join(parts)

    def entry(self, sid: int) -> tuple[str, int, int, int, int, bytes, int, int]:
        """A directory entry: (name, kind, left, right, child, class id, start sector, size)."""
        if sid in self.decoded:
            return self.decoded[sid]
        if sid >= self.count:
            raise Unsupported("a broken directory")
        offset, directory = sid * 128, self.directory
        name_size, kind, _, left, right, child = struct.unpack_from("<HBBIII", directory, offset + 64)
        start, size = struct.unpack_from("<IQ", directory, offset + 116)
        name = directory[offset:offset + max(0, min(name_size, 64) - 2)].decode("utf-16le", "replace")
        found = self.decoded[sid] = (name, kind, left, right, child, directory[offset + 80:offset + 96], start, size)
        return found

    def stream(self, sid: int) -> bytes:
        _, kind, _, _, _, _, start, size = self.entry(sid)
        if kind != 2:
            raise Unsupported("not a stream")
        if size < self.cutoff:
            return self._chain_bytes(start, self.minifat, 64, self.mini, 0)[:size]
        return self._chain_bytes(start, self.fat, self.sector, self.data, 1)[:size]

    def children(self, sid: int) -> dict[str, int]:
        """A storage's entries by name (its red-black tree of siblings, walked)."""
        if sid in self.listed:
            return self.listed[sid]
        found: dict[str, int] = {}
        stack = [self.entry(sid)[4]]
        while stack:
            at = stack.pop()
            if at == _NOSTREAM:
                continue
            if len(found) > self.count:
                raise Unsupported("a broken directory")
            entry = self.entry(at)
            found[entry[0]] = at
            stack.extend((entry[2], entry[3]))
        self.listed[sid] = found
        return found


# ----------------------------------------------------------------------------- objects


class Obj:
    """An AAF object: its class (by standard name, None for a class the file defines) and its
    properties, each (stored form, bytes)."""

    __slots__ = ("cls", "props", "sid")

    def __init__(self, sid: int, cls: str | None, props: dict[int, tuple[int, bytes]]) -> None:
        self.sid, self.cls, self.props = sid, cls, props


class AafFile:
    """The objects of an AAF file, read as they are asked for, and the values of their properties."""

    def __init__(self, data: bytes) -> None:
        self.cfb = _Compound(data)
        self.objects: dict[int, Obj] = {}
        root = self.obj(0)
        header = self.strong(root, _HEADER)
        if header is None:
            raise Unsupported("no header")
        content, dictionary = self.strong(header, _CONTENT), self.strong(header, _DICTIONARY)
        if content is None or dictionary is None:
            raise Unsupported("no content or dictionary")
        self.mobs = self.keyed(content, _MOBS)
        self.definitions = {pid: self.keyed(dictionary, pid)
                            for pid in (_OPERATION_DEFS, _PARAMETER_DEFS, _DATA_DEFS, _INTERPOLATION_DEFS)}

    def class_of(self, sid: int) -> str | None:
        """An object's class, from its storage alone (its properties unread)."""
        return _CLASSES.get(self.cfb.entry(sid)[5])

    def obj(self, sid: int) -> Obj:
        if sid in self.objects:
            return self.objects[sid]
        props: dict[int, tuple[int, bytes]] = {}
        stream = self.cfb.children(sid).get("properties")
        if stream is not None:
            data = self.cfb.stream(stream)
            byte_order, _, count = struct.unpack_from("<BBH", data, 0)
            if byte_order != 0x4C:
                raise Unsupported("a big-endian object")
            heads = struct.unpack_from(f"<{3 * count}H", data, 4)
            at = 4 + 6 * count
            for i in range(count):
                pid, stored, size = heads[3 * i:3 * i + 3]
                props[pid] = (stored, data[at:at + size])
                at += size
            if at > len(data):
                raise Unsupported("a short property stream")
        found = self.objects[sid] = Obj(sid, self.class_of(sid), props)
        return found

    # Values, decoded as pyaaf2 decodes them; None where the object does not hold the property.

    def data(self, obj: Obj, pid: int) -> bytes | None:
        prop = obj.props.get(pid)
        if prop is None:
            return None
        if prop[0] != _DATA:
            raise Unsupported(f"property {pid:#x} is not data")
        return prop[1]

    def number(self, obj: Obj, pid: int, fmt: str) -> int | None:
        data = self.data(obj, pid)
        if data is None:
            return None
        if len(data) != struct.calcsize(fmt):
            raise Unsupported(f"property {pid:#x} has an unusual size")
        value: int = struct.unpack(fmt, data)[0]
        return value

    def string(self, obj: Obj, pid: int) -> str | None:
        data = self.data(obj, pid)
        return None if data is None else _utf16(data)

    def rational(self, obj: Obj, pid: int) -> AAFRational | None:
        data = self.data(obj, pid)
        if data is None:
            return None
        if len(data) != 8:
            raise Unsupported(f"property {pid:#x} is not a rational")
        return AAFRational(*struct.unpack("<ii", data))

    def indirect(self, obj: Obj, pid: int) -> Any:
        """An indirect value (its type stated before it) of a type this reader decodes."""
        data = self.data(obj, pid)
        if data is None:
            return None
        if len(data) < 17 or data[0] != 0x4C:
            raise Unsupported("an indirect value")
        kind, value = data[1:17], data[17:]
        if kind == _RATIONAL and len(value) == 8:
            return AAFRational(*struct.unpack("<ii", value))
        if kind == _STRING:
            return _utf16(value)
        if kind in _INTEGERS and len(value) == struct.calcsize(_INTEGERS[kind]):
            return struct.unpack(_INTEGERS[kind], value)[0]
        raise Unsupported("an indirect value of another type")

    def strong(self, obj: Obj, pid: int) -> Obj | None:
        prop = obj.props.get(pid)
        if prop is None:
            return None
        if prop[0] != _STRONG:
            raise Unsupported(f"property {pid:#x} is not a strong reference")
        sid = self.cfb.children(obj.sid).get(_utf16(prop[1]))
        if sid is None:
            raise Unsupported("a strong reference to nothing")
        return self.obj(sid)

    def _index(self, obj: Obj, pid: int) -> tuple[str, list[tuple[bytes, int]]] | None:
        """A vector's or a set's (key, local key) entries, in order, and their storages' stem."""
        prop = obj.props.get(pid)
        if prop is None:
            return None
        stored, data = prop
        name = _utf16(data)
        index = self.cfb.children(obj.sid).get(name + " index")
        if index is None:
            raise Unsupported("a collection without its index")
        raw = self.cfb.stream(index)
        count = struct.unpack_from("<I", raw, 0)[0]
        if stored == _STRONG_VECTOR:
            return name, [(b"", key) for key in struct.unpack_from(f"<{count}I", raw, 12)]
        if stored == _STRONG_SET:
            size = raw[14]  # (after the count, two free keys and the key's property id)
            if size not in (16, 32):
                raise Unsupported("a set of unusual keys")
            entries = []
            for i in range(count):
                at = 15 + i * (8 + size)
                local, refs = struct.unpack_from("<II", raw, at)
                if refs != 1:
                    raise Unsupported("a set entry counted twice")
                entries.append((raw[at + 8:at + 8 + size], local))
            return name, entries
        raise Unsupported(f"property {pid:#x} is not a collection")

    def vector(self, obj: Obj, pid: int) -> list[Obj]:
        """A strong vector's (or set's) objects, in order; [] where the object holds none."""
        found = self._index(obj, pid)
        if found is None:
            return []
        name, entries = found
        children = self.cfb.children(obj.sid)
        objects = []
        for _, local in entries:
            sid = children.get(f"{name}{{{local:x}}}")
            if sid is None:
                raise Unsupported("a collection's object is missing")
            objects.append(self.obj(sid))
        return objects

    def keyed(self, obj: Obj, pid: int) -> dict[bytes, int]:
        """A strong set's storages by key, in the order of its index."""
        found = self._index(obj, pid)
        if found is None:
            return {}
        name, entries = found
        children = self.cfb.children(obj.sid)
        keyed: dict[bytes, int] = {}
        for key, local in entries:
            sid = children.get(f"{name}{{{local:x}}}")
            if sid is None:
                raise Unsupported("a set's object is missing")
            keyed[key] = sid  # (as pyaaf2's index: a key met again names its last object)
        return keyed

    def weak(self, obj: Obj, pid: int) -> bytes | None:
        """A weak reference's key (a definition's AUID)."""
        prop = obj.props.get(pid)
        if prop is None:
            return None
        if prop[0] != _WEAK or len(prop[1]) != 21 or struct.unpack_from("<HB", prop[1], 2) != (_IDENTIFICATION, 16):
            raise Unsupported(f"property {pid:#x} is not a reference to a definition")
        return prop[1][5:]

    def definition(self, kind: int, key: bytes | None) -> Obj:
        sid = self.definitions[kind].get(key) if key is not None else None
        if sid is None:
            raise Unsupported("a definition the file does not hold")
        return self.obj(sid)

    # What pyaaf2 answers for a mob, a slot, a component.

    def mob(self, clip: Obj) -> Obj | None:
        """A source reference's mob (`SourceReference.mob`): None for the zero id or an id the file
        does not hold."""
        key = self.data(clip, _SOURCE_ID)
        if key is None or not any(key):
            return None
        sid = self.mobs.get(key)
        return None if sid is None else self.obj(sid)

    def media_kind(self, component: Obj | None) -> str | None:
        """`Component.media_kind`: its data definition's name, less `DataDef_`."""
        if component is None:
            return None
        name = self.string(self.definition(_DATA_DEFS, self.weak(component, _DATA_DEF)), _DEF_NAME)
        if not name:
            return None
        for prefix in ("DataDef_", "ContainerDef_"):
            name = name.replace(prefix, "")
        return name

    def mob_id(self, mob: Obj) -> bytes:
        key = self.data(mob, _MOB_ID)
        if key is None or len(key) != 32:
            raise Unsupported("a mob without an id")
        return key


def _known(obj: Obj | None) -> Obj | None:
    if obj is not None and obj.cls is None:
        raise Unsupported("a class the file defines itself")
    return obj


def mobs_to_read(f: AafFile) -> list[Obj]:
    """The adapter's (and the expansion check's) mobs: the top-level compositions, else every
    composition, else every master mob, in the file's order."""
    classes = {sid: f.class_of(sid) for sid in f.mobs.values()}
    if None in classes.values():
        raise Unsupported("a mob of a class the file defines itself")
    compositions = [f.obj(sid) for sid, cls in classes.items() if cls == "CompositionMob"]
    top = [m for m in compositions if f.data(m, _USAGE) == _TOP_LEVEL]
    return top or compositions or [f.obj(sid) for sid, cls in classes.items() if cls == "MasterMob"]


# ----------------------------------------------------------------------------- the expansion check


def check_parts(f: AafFile, max_depth: int, too_deep: Callable[[], Exception]
                ) -> Callable[[tuple[Obj, Obj]], tuple[int, list[Any]]]:
    """`read._aaf_check`'s `children`, over this reader's objects: a slot's own clips,
    and the (mob, slot) of each source clip of a composition or master mob, through sequences and
    operation groups. Its other containers (selectors, essence groups, scopes) are the adapter's
    to read."""

    def mob_slot(clip: Obj) -> tuple[Obj, Obj] | None:
        mob = _known(f.mob(clip))
        if mob is None or mob.cls not in ("CompositionMob", "MasterMob"):
            return None
        slot_id = f.number(clip, _SOURCE_SLOT, "<I")
        slot = next((s for s in f.vector(mob, SLOTS) if f.number(s, _SLOT_ID, "<I") == slot_id), None)
        return None if slot is None else (mob, slot)

    def parts(component: Obj | None, depth: int = 0) -> Iterator[Any]:
        if depth > max_depth:
            raise too_deep()
        if component is None:
            return
        cls = _known(component).cls  # type: ignore[union-attr]
        if cls == "SourceClip":
            node = mob_slot(component)
            yield node if node is not None else 1
        elif cls == "Sequence":
            for part in f.vector(component, _COMPONENTS):
                yield from parts(part, depth + 1)
        elif cls == "OperationGroup":
            for part in f.vector(component, _INPUTS):
                yield from parts(part, depth + 1)
        elif cls in ("Selector", "EssenceGroup", "NestedScope"):
            raise Unsupported(cls)

    def children(node: tuple[Obj, Obj]) -> tuple[int, list[Any]]:
        direct, refs = 0, []
        for part in parts(f.strong(node[1], _SEGMENT)):
            if part == 1:
                direct += 1
            else:
                refs.append(part)
                # A composition mob used as a clip: that one more (built each time, clips or none).
                direct += part[0].cls == "CompositionMob"
        return direct, refs

    return children


def check_key(f: AafFile) -> Callable[[tuple[Obj, Obj]], Any]:
    return lambda node: (f.mob_id(node[0]), f.number(node[1], _SLOT_ID, "<I"))


# ----------------------------------------------------------------------------- the transcription

_RT, _TR = otio.opentime.RationalTime, otio.opentime.TimeRange


class _Transcriber:
    """The adapter's `_transcribe` for the objects this reader covers: the same OTIO objects,
    with the same names, kinds, ranges and effects, and the metadata (`AAF`) its later passes read:
    a track's slot id and physical track number, an item's media kind, an effect's operation."""

    def __init__(self, f: AafFile) -> None:
        self.f = f
        self.masters: dict[bytes, tuple[otio.schema.Timeline, list[int | None]]] = {}

    def timeline(self, mob: Obj) -> otio.schema.Timeline:
        f = self.f
        result = otio.schema.Timeline()
        for slot in f.vector(mob, SLOTS):
            result.tracks.append(self.slot(slot))
        self._start_timecode(mob)  # (the adapter's global start time: read as it reads it, not kept)
        result.name = f.string(mob, _MOB_NAME) or "CompositionMob"
        return result

    def slot(self, slot: Obj) -> otio.schema.Track:
        f = self.f
        if _known(slot).cls != "TimelineMobSlot":  # type: ignore[union-attr]
            raise Unsupported("a slot that is not a timeline")
        rate = f.rational(slot, _EDIT_RATE)
        if rate is None:
            raise Unsupported("a slot without an edit rate")
        segment = f.strong(slot, _SEGMENT)
        result = otio.schema.Track()
        child = self.component(segment, slot, float(rate))
        if child is not None:
            result.append(child)
        kind = f.media_kind(segment)
        result.name = f.string(slot, _SLOT_NAME) or "TimelineMobSlot"
        result.metadata["AAF"] = self._slot_metadata(slot, {"MediaKind": str(kind)})
        result.kind = _adapter._transcribe_media_kind(kind)
        return result

    def _slot_metadata(self, slot: Obj, extra: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"ClassName": "TimelineMobSlot", **extra}
        for key, pid in (("SlotID", _SLOT_ID), ("PhysicalTrackNumber", _TRACK_NUMBER)):
            value = self.f.number(slot, pid, "<I")
            if value is not None:
                metadata[key] = value
        return metadata

    def _length(self, component: Obj) -> int:
        length = self.f.number(component, _LENGTH, "<q")
        if length is None:
            raise Unsupported("a component without a length")
        return length

    def component(self, component: Obj | None, parent: Obj, rate: float) -> Any:
        """The OTIO object of a slot's segment or a sequence's component, or None for one the
        adapter leaves out (timecode, pulldown, edge code)."""
        f = self.f
        if component is None:
            return None
        cls = _known(component).cls  # type: ignore[union-attr]
        if cls in ("Timecode", "Pulldown", "EdgeCode"):
            return None
        if cls == "Filler":
            gap = otio.schema.Gap(source_range=_TR(_RT(0, rate), _RT(self._length(component), rate)))
            gap.name = "Filler"
            return gap
        if cls == "Sequence":
            if parent.cls in ("Sequence", "NestedScope"):
                raise Unsupported("a sequence in a sequence")
            track = otio.schema.Track()
            for part in f.vector(component, _COMPONENTS):
                child = self.component(part, component, rate)
                if child is not None:
                    track.append(child)
            kind = f.media_kind(component)
            track.name = "Sequence"
            track.metadata["AAF"] = {"ClassName": "Sequence", "MediaKind": str(kind)}
            track.kind = _adapter._transcribe_media_kind(kind)
            return track
        if cls == "Transition":
            group = f.strong(component, _TRANSITION_GROUP)
            if group is None:
                raise Unsupported("a transition without its operation")
            self.component(group, component, rate)  # as the adapter reads it (what it holds is checked)
            cut = f.number(component, _CUT_POINT, "<q") or 0
            transition = otio.schema.Transition(
                name="Transition", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=_RT(cut, rate), out_offset=_RT(self._length(component) - cut, rate))
            return transition
        if cls == "SourceClip":
            return self._source_clip(component, rate)
        if cls == "OperationGroup":
            return self._operation_group(component, rate)
        raise Unsupported(f"a {cls}")

    def _source_clip(self, clip: Obj, rate: float) -> otio.schema.Track:
        f = self.f
        mob = _known(f.mob(clip))
        if mob is None or mob.cls != "MasterMob":
            raise Unsupported("a source clip of something else than a master mob")
        timeline, slot_ids = self._master(mob)
        slot_id = f.number(clip, _SOURCE_SLOT, "<I")
        index = next((i for i, s in enumerate(slot_ids) if s == slot_id), None)
        start = f.number(clip, _START, "<q")
        if index is None or start is None:
            raise Unsupported("a source clip of a slot its mob does not hold")
        result = timeline.tracks[index].clone()
        result.source_range = _TR(_RT(start, rate), _RT(self._length(clip), rate))
        if not result.name:
            result.name = f.string(mob, _MOB_NAME) or "Untitled SourceClip"
        result.kind = _adapter._transcribe_media_kind(f.media_kind(clip))
        return result

    def _parameter(self, parameter: Obj) -> tuple[str, Any]:
        """A parameter's name (its definition's) and value, as the adapter's metadata reads them: a
        constant (its value decoded where it is used); a varying value's control points (float
        time, float value), its interpolation resolved."""
        f = self.f
        name = f.string(f.definition(_PARAMETER_DEFS, f.data(parameter, _PARAMETER_DEF)), _DEF_NAME)
        if name is None:
            raise Unsupported("a parameter definition without a name")
        if parameter.cls == "ConstantValue":
            return name, parameter
        if parameter.cls == "VaryingValue":
            f.definition(_INTERPOLATION_DEFS, f.weak(parameter, _INTERPOLATION))
            points = []
            for point in f.vector(parameter, _POINTS):
                time, value = f.rational(point, _POINT_TIME), f.indirect(point, _POINT_VALUE)
                if time is None or not isinstance(value, int | AAFRational):
                    raise Unsupported("a control point")
                points.append((float(time), float(value)))
            return name, points
        raise Unsupported("a parameter of another kind")

    def _operation_group(self, group: Obj, rate: float) -> otio.schema.Stack:
        f = self.f
        if f.strong(group, _RENDERING) is not None:
            raise Unsupported("an operation with a rendering")
        operation = f.definition(_OPERATION_DEFS, f.weak(group, _OPERATION))
        operation_name = f.string(operation, _DEF_NAME)
        time_warp = f.number(operation, _IS_TIME_WARP, "<B")
        parameters: dict[str, Any] = {}
        for parameter in f.vector(group, _PARAMETERS):
            name, value = self._parameter(parameter)
            parameters[name] = (parameter.cls, value)
        result = otio.schema.Stack()
        result.name = "OperationGroup" if operation_name is None else operation_name
        result.source_range = _TR(_RT(0, rate), _RT(self._length(group), rate))
        if time_warp:
            if operation_name == "Motion Control":
                effect = self._time_warp(group, parameters) if "SpeedRatio" in parameters else \
                    otio.schema.TimeEffect(effect_name="Unknown Time Warp Effect")
            else:
                effect = otio.schema.TimeEffect(effect_name="")
        else:
            effect = otio.schema.Effect(effect_name="")
        result.effects.append(effect)
        effect.metadata["AAF"] = {"Operation": {} if time_warp is None else {"IsTimeWarp": bool(time_warp)}}
        effect.name = operation_name
        for segment in f.vector(group, _INPUTS):
            child = self.component(segment, group, rate)
            if child:  # (the adapter's test: an empty track is left out)
                if not isinstance(child, otio.schema.Track):
                    track = otio.schema.Track()
                    track.kind = _adapter._transcribe_media_kind(f.media_kind(segment))
                    track.append(child)
                    child = track
                result.append(child)
        for clip in result.find_clips():
            if clip.name:
                result.name = clip.name
                break
        result.metadata["AAF"] = {}
        return result

    def _time_warp(self, group: Obj, parameters: dict[str, tuple[str, Any]]) -> Any:
        """The adapter's `_transcribe_linear_timewarp`."""
        effect: Any = otio.schema.LinearTimeWarp()
        offset_map = parameters.get("PARAM_SPEED_OFFSET_MAP_U")
        if offset_map is not None and offset_map[0] != "VaryingValue":
            raise Unsupported("a speed map that is not keyframed")
        points = offset_map[1] if offset_map is not None else []
        if len(points) > 2:
            return otio.schema.TimeEffect(effect_name="Unknown Time Warp Effect")
        if len(points) == 2:
            (t0, v0), (t1, v1) = points
            effect.time_scalar = float(v1 - v0) / float(t1 - t0)
        else:
            cls, constant = parameters["SpeedRatio"]
            ratio = self.f.indirect(constant, _CONSTANT_VALUE) if cls == "ConstantValue" else None
            if not isinstance(ratio, AAFRational):
                raise Unsupported("a speed ratio that is not a rational")
            text = str(ratio)
            if text == str(self._length(group)):
                effect.time_scalar = 0
            elif "/" in text:
                numerator, denominator = map(float, text.split("/"))
                effect.time_scalar = denominator / numerator
            else:
                effect.time_scalar = 1.0 / float(text)
        if effect.time_scalar == 0:
            effect = otio.schema.FreezeFrame()
        return effect

    # The master mob's timeline (`_transcribe_master_mob`), once per mob.

    def _master(self, mob: Obj) -> tuple[otio.schema.Timeline, list[int | None]]:
        f = self.f
        key = f.mob_id(mob)
        if key in self.masters:
            return self.masters[key]
        name = f.string(mob, _MOB_NAME)
        if name is None:
            raise Unsupported("a master mob without a name")
        timeline = otio.schema.Timeline(name=name)
        global_start = self._start_timecode(mob)
        unc_path = self._unc_path(mob)
        slot_ids: list[int | None] = []
        for slot in f.vector(mob, SLOTS):
            if _known(slot).cls != "TimelineMobSlot":  # type: ignore[union-attr]
                raise Unsupported("a master mob's slot that is not a timeline")
            rate = f.rational(slot, _EDIT_RATE)
            segment = f.strong(slot, _SEGMENT)
            if rate is None or segment is None:
                raise Unsupported("a master mob's slot without its rate or segment")
            # Its metadata, the slot's properties, is read by the adapter's passes for its class
            # (a composition's is kept whole) and a marker's slot (this reader covers none); a
            # slot's track is found by the ids kept here.
            track = otio.schema.Track(metadata={"AAF": {"ClassName": "TimelineMobSlot"}})
            track.kind = _adapter._transcribe_media_kind(f.media_kind(segment))
            track.name = f.string(slot, _SLOT_NAME) or ""
            components = f.vector(segment, _COMPONENTS) if _known(segment).cls == "Sequence" else [segment]  # type: ignore[union-attr]
            for component in components:
                if _known(component).cls == "EssenceGroup":  # type: ignore[union-attr]
                    raise Unsupported("an essence group")
                item = self._master_item(mob, slot, component, float(rate), global_start, unc_path, name)
                if item is not None:
                    track.append(item)
            timeline.tracks.append(track)
            slot_ids.append(f.number(slot, _SLOT_ID, "<I"))
        self.masters[key] = (timeline, slot_ids)
        return self.masters[key]

    def _master_item(self, mob: Obj, slot: Obj, component: Obj, rate: float, global_start: Any,
                     unc_path: str | None, name: str) -> Any:
        f = self.f
        length = f.number(component, _LENGTH, "<q")
        if not length:
            return None
        media_kind = f.media_kind(component)
        if component.cls != "SourceClip":
            return otio.schema.Gap(source_range=_TR(_RT(0, rate), _RT(length, rate)))
        chain = self._chain(mob, slot, component)
        in_range = None
        references: list[Any] = []
        clips = []  # (a master mob's clip for each master mob in the chain: the adapter keeps the first)
        for chain_mob, chain_slot, chain_clip in reversed(chain):
            start_tc = self._start_timecode(chain_mob) if chain_mob.cls == "SourceMob" else None
            available = self._clip_range(chain_slot, chain_clip, in_range, start_tc)
            if chain_mob.cls == "SourceMob":
                references.extend(self._source_references(chain_mob, available, global_start))
            elif chain_mob.cls == "MasterMob":
                references.reverse()
                if chain_mob is not mob:
                    raise Unsupported("a master mob of a master mob")
                clip = self._master_clip(name, available, references, global_start, unc_path)
                clip.metadata["AAF"] = {"ClassName": "MasterMob", "MediaKind": media_kind}
                clips.append(clip)
            else:
                raise Unsupported("a source chain through another kind of mob")
            in_range = available
        return clips[0] if clips else None

    def _chain(self, mob: Obj, slot: Obj, clip: Obj) -> list[tuple[Obj, Obj, Obj]]:
        """The adapter's `_get_source_mob_reference_chain`: the master's clip, its file mob's, its
        tape mob's..., each the first source clip of the slot the one before names."""
        f = self.f
        chain = [(mob, slot, clip)]
        while True:
            mob, clip = chain[-1][0], chain[-1][2]
            below = _known(f.mob(clip))
            if below is None:
                break
            slot_id = f.number(clip, _SOURCE_SLOT, "<I")
            below_slot = next((s for s in f.vector(below, SLOTS) if f.number(s, _SLOT_ID, "<I") == slot_id), None)
            if below_slot is None:
                break
            segment = _known(f.strong(below_slot, _SEGMENT))
            parts = f.vector(segment, _COMPONENTS) if segment is not None and segment.cls == "Sequence" else \
                [segment] if segment is not None else []
            below_clip = next((p for p in parts if _known(p).cls == "SourceClip"), None)  # type: ignore[union-attr]
            if below_clip is None:
                break
            if len(chain) > 64 or any(link[2] is below_clip for link in chain):
                raise Unsupported("a source chain that loops")
            chain.append((below, below_slot, below_clip))
        return chain

    def _start_timecode(self, mob: Obj) -> Any:
        """`_get_mob_start_tc`: the first timecode of the mob's slot numbered 1, as a range."""
        f = self.f
        for slot in f.vector(mob, SLOTS):
            segment = _known(f.strong(slot, _SEGMENT))
            parts = f.vector(segment, _COMPONENTS) if segment is not None and segment.cls == "Sequence" else \
                [segment] if segment is not None else []
            timecode = next((p for p in parts if is_a(_known(p).cls, "Timecode")), None)  # type: ignore[union-attr]
            if timecode is None:
                continue
            if f.number(slot, _TRACK_NUMBER, "<I") == 1:
                rate = f.rational(slot, _EDIT_RATE)
                start, length = f.number(timecode, _TC_START, "<q"), f.number(timecode, _LENGTH, "<q")
                if rate is None or start is None or length is None:
                    raise Unsupported("a timecode without its rate, start or length")
                return _TR(_RT(start, float(rate)), _RT(length, float(rate)))
        return None

    def _clip_range(self, slot: Obj, clip: Obj, in_range: Any, start_tc: Any) -> Any:
        """`_get_source_clip_ranges`."""
        f = self.f
        rate, start, length = f.rational(slot, _EDIT_RATE), f.number(clip, _START, "<q"), f.number(clip, _LENGTH, "<q")
        if rate is None or start is None or length is None:
            raise Unsupported("a source clip without its rate, start or length")
        edit_rate = float(rate)
        start_time, duration = _RT(start, edit_rate), _RT(length, edit_rate)
        if start_tc:
            start_time = start_time + start_tc.start_time.rescaled_to(edit_rate)
            duration = max(duration, start_tc.duration.rescaled_to(edit_rate))
        if in_range:
            start_time += in_range.start_time.rescaled_to(edit_rate)
            return _TR(start_time, duration).clamped(in_range)
        return _TR(start_time, duration)

    def _source_references(self, mob: Obj, available: Any, global_start: Any) -> list[Any]:
        """`_transcribe_source_mob`'s references: one per locator with an address, else a missing one."""
        f = self.f
        descriptor = f.strong(mob, _DESCRIPTOR)
        if descriptor is None:
            raise Unsupported("a source mob without its descriptor")
        urls = []
        for locator in f.vector(descriptor, _LOCATORS):
            if locator.cls != "NetworkLocator":
                raise Unsupported("a locator without an address")
            url = f.string(locator, _URL)
            if url:
                urls.append(_adapter._transcribe_url(url))
        name = f.string(mob, _MOB_NAME) or str(MobID(bytes_le=f.mob_id(mob)))
        if global_start:
            available = _TR(available.start_time + global_start.start_time, available.duration)
        references = []
        for url in urls or [None]:
            if url:
                reference = otio.schema.ExternalReference(target_url=url, available_range=available)
            else:
                reference = otio.schema.MissingReference(name=name, available_range=available)
            reference.name = name
            references.append(reference)
        return references

    def _master_clip(self, name: str, source_range: Any, references: list[Any], global_start: Any,
                     unc_path: str | None) -> otio.schema.Clip:
        """`_transcribe_master_mob_slot`: the clip, its first reference the one it plays (the
        others, which the import never reads, are left out)."""
        if global_start:
            source_range = _TR(source_range.start_time + global_start.start_time, source_range.duration)
        clip = otio.schema.Clip(name=name, source_range=source_range)
        if unc_path:
            reference = otio.schema.ExternalReference(target_url=_adapter._transcribe_url(unc_path))
            reference.name = "UNC Path"
            reference.available_range = source_range
            references.insert(0, reference)
        if references:
            clip.media_reference = references[0]
        return clip

    def _unc_path(self, mob: Obj) -> str | None:
        """The master mob's `UNC Path` user comment, which the adapter makes its clips' reference."""
        f = self.f
        found = None
        for tag in f.vector(mob, _USER_COMMENTS):
            if f.string(tag, _TAG_NAME) == "UNC Path":
                value = f.indirect(tag, _TAG_VALUE)
                if value and not isinstance(value, str):
                    raise Unsupported("a UNC path that is not text")
                found = value
        return found or None


def read_timeline(f: AafFile, mob: Obj) -> otio.schema.Timeline:
    """The top-level composition as the AAF adapter's `read_from_file` answers it."""
    timeline = _Transcriber(f).timeline(mob)
    _adapter._fix_transitions(timeline)
    # (`_attach_markers` moves markers read from event slots: this reader covers none.)
    simplified: otio.schema.Timeline = _adapter._simplify(timeline)
    return simplified

"""Reading and writing rosbag2 recordings with `rosbags` (mcap or sqlite3), robust to damaged recordings.

Writing: `BagWriter` (rosbag2 version 9; the message definitions go into the bag, so `ros2 bag`, Foxglove and
any mcap reader decode it without our code).

Reading: `BagReader` yields deserialized messages in recording order. It copes with what a real recording
can look like and says what it did in a `SkipLog`:
- a complete rosbag2 directory (metadata.yaml + storage files), or a bare `.mcap` / `.db3` file;
- a directory without metadata.yaml (a recording that was killed before it closed): its storage files are
  read directly;
- an mcap without footer/summary (killed while writing): records are streamed from the start up to the
  damage, the rest is reported lost;
- messages that cannot be deserialized are skipped, counted per topic.
"""

import collections
from dataclasses import dataclass
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from seqpose_core.bag.messages import typestore

STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
STORAGE_SUFFIXES = ('.mcap', '.db3')


class BagError(RuntimeError):
    """A bag that cannot be used at all (the message names the path and the reason)."""


class SkipLog:
    """What was skipped and why: counted per (what, reason), kept in first-seen order for the report."""

    def __init__(self):
        self._counts = collections.OrderedDict()
        self._examples = {}
        self.notes = []  # things done to the data that skipped nothing (e.g. reordered by stamp)

    def note(self, text: str):
        if text not in self.notes:
            self.notes.append(text)

    def add(self, what: str, reason: str, count: int = 1, example=None):
        key = (what, reason)
        self._counts[key] = self._counts.get(key, 0) + count
        if example is not None and key not in self._examples:
            self._examples[key] = str(example)

    def entries(self) -> list:
        out = []
        for (what, reason), count in self._counts.items():
            entry = {'what': what, 'reason': reason, 'count': count}
            if (what, reason) in self._examples:
                entry['example'] = self._examples[(what, reason)]
            out.append(entry)
        return out

    def __bool__(self):
        return bool(self._counts)

    def format(self) -> str:
        lines = []
        for entry in self.entries():
            example = f' (e.g. {entry["example"]})' if 'example' in entry else ''
            lines.append(f'  - {entry["count"]} x {entry["what"]}: {entry["reason"]}{example}')
        return '\n'.join(lines)


# ------------------------------------------------------------------ writing


class BagWriter:
    """A rosbag2 writer that takes message objects: `writer.write(topic, msgtype, msg, time_ns)`.

    Connections are created on first use of a topic. Use as a context manager; on an exception the partial
    bag is closed (not deleted) so that what was written can still be inspected.
    """

    def __init__(self, path, storage: str = 'mcap'):
        if storage not in STORAGE_PLUGINS:
            raise ValueError(f'--storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path} exists already; choose a new output path (bags are never overwritten)')
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGE_PLUGINS[storage])
        self._connections = {}
        self._store = typestore()
        self.message_count = 0

    def __enter__(self):
        self._writer.open()
        return self

    def __exit__(self, *exc):
        self._writer.close()
        return False

    def write(self, topic: str, msgtype: str, msg, time_ns: int):
        self.write_raw(topic, msgtype, self._store.serialize_cdr(msg, msgtype), time_ns)

    def write_raw(self, topic: str, msgtype: str, cdr_bytes, time_ns: int, msgdef=None):
        """Write already-serialized CDR bytes (copying messages from another bag keeps them bit-exact).
        `msgdef`: (definition text, rihs01) for types our typestore does not know."""
        connection = self._connections.get(topic)
        if connection is None:
            if msgdef is not None:
                connection = self._writer.add_connection(topic, msgtype, msgdef=msgdef[0], rihs01=msgdef[1])
            else:
                connection = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagError(f'{self.path}: topic {topic} already has type {connection.msgtype}, not {msgtype}')
        self._writer.write(connection, int(time_ns), bytes(cdr_bytes))
        self.message_count += 1


# ------------------------------------------------------------------ reading


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int  # when the recorder received it (the bag's timestamp), not the header stamp
    raw: bytes  # CDR bytes as stored
    msg: object  # deserialized (rosbags dataclass)


@dataclass
class TopicInfo:
    topic: str
    msgtype: str
    count: int  # -1 when unknown (damaged recording streamed without an index)
    msgdef: tuple = None  # (definition text, rihs01) as stored in the bag, for copying the topic


class _Source:
    """One readable storage: a whole rosbag2 (via rosbags' AnyReader) or one damaged mcap (streamed)."""

    def topics(self) -> dict:
        raise NotImplementedError

    def messages(self, topics):
        raise NotImplementedError


class _AnyReaderSource(_Source):
    def __init__(self, paths):
        from rosbags.highlevel import AnyReader

        self.paths = paths
        # default_typestore: a bag without stored definitions (old sqlite3 bags) is read with Kilted + ours.
        self.reader = AnyReader(paths, default_typestore=typestore())
        self.reader.open()  # raises on damage; the caller falls back

    def topics(self):
        out = {}
        for connection in self.reader.connections:
            info = out.get(connection.topic)
            count = connection.msgcount
            msgdef = None
            if connection.msgdef.data and connection.digest:
                msgdef = (connection.msgdef.data, connection.digest)
            if info is None:
                out[connection.topic] = TopicInfo(connection.topic, connection.msgtype, count, msgdef)
            else:
                info.count += count
        return out

    def messages(self, topics):
        connections = [c for c in self.reader.connections if topics is None or c.topic in topics]
        if not connections:
            return
        for connection, timestamp, raw in self.reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, timestamp, raw, self.reader.deserialize

    def close(self):
        self.reader.close()


class _StreamedMcapSource(_Source):
    """An mcap without a valid footer/summary, read record by record until the data ends or is damaged."""

    def __init__(self, path, skipped: SkipLog):
        self.path = Path(path)
        self.skipped = skipped
        self._store = get_typestore(Stores.EMPTY)
        self._channels = {}  # channel id -> (topic, msgtype)
        self._schemas = {}  # schema id -> (msgtype, definition text)
        self._topics = None
        self._reported = False

    def _records(self):
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        read_messages = 0
        with open(self.path, 'rb') as stream:
            reader = StreamReader(stream, skip_magic=False, emit_chunks=False)
            try:
                for record in reader.records:
                    if isinstance(record, Schema):
                        self._schemas[record.id] = (record.name, record.data.decode('utf-8'))
                    elif isinstance(record, Channel):
                        msgtype, definition = self._schemas.get(record.schema_id, (None, ''))
                        if msgtype is None:
                            continue
                        if msgtype not in self._store.types and definition:
                            self._store.register(get_types_from_msg(definition, msgtype))
                        self._channels[record.id] = (record.topic, msgtype)
                    elif isinstance(record, Message):
                        read_messages += 1
                        yield record
            except Exception as error:  # the damaged tail: EndOfFile, bad record length, CRC, bad chunk
                if not self._reported:
                    self._reported = True
                    detail = f'{type(error).__name__}: {error}' if str(error) else type(error).__name__
                    self.skipped.add(
                        'unreadable tail of the recording',
                        f'{self.path.name} ({self.path.stat().st_size} bytes) has no mcap footer '
                        f'or is damaged ({detail}): a killed recording? {read_messages} messages '
                        f'read before the damage, the rest (at least the last unfinished chunk) '
                        f'is lost',
                    )

    def topics(self):
        if self._topics is None:
            counts = collections.Counter()
            for record in self._records():
                if record.channel_id in self._channels:
                    counts[record.channel_id] += 1
            self._topics = {}
            for channel_id, (topic, msgtype) in self._channels.items():
                info = self._topics.setdefault(topic, TopicInfo(topic, msgtype, 0))
                info.count += counts[channel_id]
        return self._topics

    def messages(self, topics):
        def deserialize(raw, msgtype):
            return self._store.deserialize_cdr(raw, msgtype)

        for record in self._records():
            channel = self._channels.get(record.channel_id)
            if channel is None or (topics is not None and channel[0] not in topics):
                continue
            yield channel[0], channel[1], record.log_time, record.data, deserialize

    def close(self):
        pass


class BagReader:
    """Open a rosbag2 directory or storage file, damaged or not; report what was skipped in `skipped`."""

    def __init__(self, path, skipped: SkipLog = None):
        self.path = Path(path)
        self.skipped = skipped if skipped is not None else SkipLog()
        if not self.path.exists():
            raise BagError(f'{self.path}: no such bag (expected a rosbag2 directory or a .mcap/.db3 file)')
        self.sources = self._open_sources()
        self._topics = None

    def _open_sources(self):
        if self.path.is_file():
            if self.path.suffix not in STORAGE_SUFFIXES:
                raise BagError(f'{self.path}: not a rosbag2 storage file (expected {"/".join(STORAGE_SUFFIXES)})')
            return [self._open_storage_file(self.path)]
        if (self.path / 'metadata.yaml').exists():
            try:
                return [_AnyReaderSource([self.path])]
            except Exception as error:
                self.skipped.add(
                    'metadata.yaml',
                    f'the bag could not be opened through its metadata '
                    f'({type(error).__name__}: {error}); reading the storage files directly',
                )
        storage_files = sorted(p for p in self.path.iterdir() if p.suffix in STORAGE_SUFFIXES)
        if not storage_files:
            raise BagError(f'{self.path}: no metadata.yaml and no .mcap/.db3 storage files; not a rosbag2')
        if not (self.path / 'metadata.yaml').exists():
            self.skipped.add(
                'metadata.yaml',
                f'missing: the recording was not closed (killed?); read {len(storage_files)} storage file(s) directly',
            )
        return [self._open_storage_file(p) for p in storage_files]

    def _open_storage_file(self, path):
        try:
            return _AnyReaderSource([path])
        except Exception as error:
            if path.suffix != '.mcap':
                raise BagError(f'{path}: cannot be read ({type(error).__name__}: {error})') from None
            # a killed mcap recording has no footer: stream it
            return _StreamedMcapSource(path, self.skipped)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for source in self.sources:
            source.close()

    def topics(self) -> dict:
        """topic -> TopicInfo, over all storage files."""
        if self._topics is None:
            merged = {}
            for source in self.sources:
                for topic, info in source.topics().items():
                    if topic in merged:
                        merged[topic].count += info.count
                    else:
                        merged[topic] = TopicInfo(info.topic, info.msgtype, info.count, info.msgdef)
            self._topics = merged
        return self._topics

    def messages(self, topics=None, deserialize=True):
        """Yield BagMessage for `topics` (None: all), in recording order within each storage file.

        `deserialize`: True (all), False (none: `msg` is None) or a set of topics to deserialize.
        Messages that fail to deserialize are skipped and counted per topic in `skipped`.
        """
        wanted = None if topics is None else set(topics)
        for source in self.sources:
            for topic, msgtype, log_time, raw, deserializer in source.messages(wanted):
                msg = None
                if deserialize is True or (deserialize and topic in deserialize):
                    try:
                        msg = deserializer(raw, msgtype)
                    except Exception as error:
                        self.skipped.add(
                            f'{topic} message',
                            f'could not be deserialized as {msgtype} ({type(error).__name__}: {error})',
                            example=f't={log_time}',
                        )
                        continue
                yield BagMessage(topic, msgtype, log_time, bytes(raw), msg)

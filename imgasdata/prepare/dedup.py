"""Finding duplicate and near-duplicate images (the book's chapter 5, scaled up).

The book's own script compares every pair of ``.jpg`` files pixel by pixel. This
module does the same job for 10^5 and more images of any format Pillow reads:

* :func:`hash_files` turns a list of paths into a table of one hash per file
  (``path, hash, error``). It is the unit of work a cluster can map over chunks,
  and it keeps a per-file cache keyed on path, size, times and inode
  (:class:`imgasdata.file_cache.HashCache`), so a re-run on a grown folder hashes only
  the new files; ``cnn`` embeddings go in it under the key the labelling commands read
  too, so one cache file serves ``dedup --method cnn``, ``suggest`` and ``label-issues``.
  Each method (:data:`METHODS`) is one record owning its encoding, threshold, distance
  and search; hashing runs as a job of :func:`imgasdata.jobs.run_job`, on this machine
  or a Ray cluster.
* :func:`near_pairs` finds the near-duplicate pairs among hashes. The default
  ``phash`` method keeps a pair when its pHashes are within the threshold *and*
  the dHashes of the same decodings agree too (within the threshold plus
  :data:`CONFIRM_MARGIN` bits): two independent hashes rarely err on the same pair.
* :func:`find_pairs` finds every pair within a Hamming distance without
  comparing all pairs: multi-index hashing (the 64 bits are cut into 4 blocks of
  16; two hashes within distance ``t`` agree within ``t // 4`` bits on at least
  one block, so only hashes sharing such a block are compared). Memory grows
  linearly with the number of images.
* :func:`find_duplicates` groups the pairs around the images it keeps (the
  largest copy by default; the book kept the first path in sorted order), so a
  duplicate is always within the threshold of the image kept for it and chains
  of look-alikes never merge strangers; it returns one row per file.
* :func:`find_cross_duplicates` lists the images of one set (a test set) that
  have a near-duplicate in another (the training set): a leak that inflates the
  accuracy a paper reports.

Every image is decoded by :func:`imgasdata.images.load_image`, which lays
transparency on white: hashing the alpha-less pixels of a transparent PNG (what
``convert("L")`` does) turns every emoji into the same hash.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import lazy_loader as lazy
import numpy as np

from ..backbones import DEFAULT_BACKBONE
from ..errors import DataError, SettingsError
from ..file_cache import HashCache, embedding_key, file_stamp, text_vectors, vector_text
from ..images import ImageLoadError, expand_inputs, load_image
from ..jobs import Job, check_workers, engine_name, job_rows
from ..paths import path_key, path_text
from ..progress import progress as progress_bar

# pandas loads on first use: building the command line's parser must not wait ~1 s for it.
pd = lazy.load("pandas")

#: ``phash`` pairs are kept only if their dHashes (computed from the same decoding) are
#: within the pHash threshold plus this many bits. pHash alone, past 8 bits, pairs
#: pictures that share a large flat area or the same corner text; dHash (brightness
#: gradients) errs on other pairs, so requiring both cuts false pairs several-fold
#: and costs few true ones (see benchmarks/bench_dedup.py).
CONFIRM_MARGIN = 4


# --- methods: one record each ----------------------------------------------------------------
#
# A method owns its encoding (an image to a text cell), its default threshold and how it checks
# one, its distance and its search for pairs (imagededup's pattern), and says whether it runs on
# the engines and keeps a cache. :data:`METHODS` is the one table; the command line builds its
# choices and help from it. A new method is one class here and its line in METHODS.


class Method:
    """What every dedup method declares; see the subclasses."""

    name = ""
    summary = ""
    #: the threshold used when none is given
    default_threshold = 0
    #: decoding size: JPEGs are decoded at a reduced scale (draft mode) at least this large
    decode_size = None
    #: whether the method runs on the engines (local processes, Ray) and keeps a hash cache
    takes_engine = True
    takes_cache = True
    #: whether its "hash" cell is short enough to show in find_duplicates' table
    hash_in_table = True

    def check_threshold(self, threshold):
        """``threshold`` (``None``: the default) as this method uses it; a wrong one raises :class:`SettingsError`."""
        raise NotImplementedError

    def cache_key(self, backbone=None):
        """The name its hashes are cached under (a change of encoding gets a new one)."""
        return self.name

    def job(self, backbone=None, device="auto"):
        """The job that turns paths into ``[path, hash, error]`` rows (:func:`imgasdata.jobs.run_job`)."""
        return HashJob(self.name)

    def encode(self, img):
        """The hash of one decoded RGB picture, as text."""
        raise NotImplementedError

    def pairs(self, hashes, threshold, other=None):
        """Pairs within ``threshold``: a DataFrame ``i, j, distance`` (``i < j``, or ``j`` in ``other``)."""
        raise NotImplementedError

    def distances(self, hashes, first):
        """Distance of each hash to the hash at position ``first[row]``."""
        raise NotImplementedError


class ExactHash(Method):
    """SHA-256 of the decoded pixels (RGB, transparency on white): the same picture saved twice is a duplicate."""

    name = "exact"
    summary = "same decoded pixels (SHA-256)"

    def check_threshold(self, threshold):
        return 0

    def encode(self, img):
        digest = hashlib.sha256(f"{img.width}x{img.height}".encode())
        digest.update(img.tobytes())
        return digest.hexdigest()

    def pairs(self, hashes, threshold, other=None):
        left = pd.DataFrame({"hash": list(hashes)})
        right = left if other is None else pd.DataFrame({"hash": list(other)})
        merged = left.reset_index().merge(right.reset_index(), on="hash", suffixes=("_i", "_j"))
        if other is None:
            merged = merged[merged["index_i"] < merged["index_j"]]
        return pd.DataFrame({"i": merged["index_i"].to_numpy(), "j": merged["index_j"].to_numpy(), "distance": 0})

    def distances(self, hashes, first):
        return np.zeros(len(hashes), dtype=int)


class _ImageHash(Method):
    """A 64-bit perceptual hash from :mod:`imagehash`, stored as 16 hex digits; Hamming distance."""

    decode_size = 64

    def _hash(self, img):
        raise NotImplementedError

    def check_threshold(self, threshold):
        threshold = self.default_threshold if threshold is None else threshold
        if int(threshold) != threshold or not 0 <= threshold <= 32:
            raise SettingsError(f"The {self.name} threshold is a Hamming distance from 0 to 32 bits (of 64), "
                                f"got {threshold}")
        return int(threshold)

    def encode(self, img):
        # The hashes look at 32x32 pixels or fewer: a big picture is first box-reduced to a
        # shorter side of 128-255 px, which gives the same hash far faster than filtering
        # the full-size picture down.
        factor = min(img.size) // 128
        if factor >= 2:
            img = img.reduce(factor)
        return str(self._hash(img))

    def pairs(self, hashes, threshold, other=None):
        codes = hashes_to_array(hashes)
        return find_pairs(codes, threshold, None if other is None else hashes_to_array(other))

    def distances(self, hashes, first):
        if not len(hashes):
            return np.zeros(0, dtype=int)
        codes = hashes_to_array(hashes)
        return np.bitwise_count(codes ^ codes[first]).astype(int)


class PHash(_ImageHash):
    """Perceptual hash (DCT of a 32x32 greyscale image): robust to re-encoding, resizing and small edits.

    The hash is 32 hex digits: the 64-bit pHash, then the 64-bit dHash of the same
    decoding, which confirms each pair (within the threshold plus :data:`CONFIRM_MARGIN`).
    """

    name = "phash"
    summary = "perceptual hash (DCT), each pair confirmed by dHash"
    default_threshold = 10

    def cache_key(self, backbone=None):
        return "phash+dhash"  # not the 16-digit pHash an older cache may hold

    def _hash(self, img):
        import imagehash

        return f"{imagehash.phash(img, hash_size=8)}{imagehash.dhash(img, hash_size=8)}"

    def pairs(self, hashes, threshold, other=None):
        pairs = super().pairs(hashes, threshold, other)
        if len(pairs):
            check = hashes_to_array(hashes, 1)
            check_other = check if other is None else hashes_to_array(other, 1)
            d = np.bitwise_count(check[pairs["i"].to_numpy()] ^ check_other[pairs["j"].to_numpy()])
            pairs = pairs[d <= threshold + CONFIRM_MARGIN].reset_index(drop=True)
        return pairs


class DHash(_ImageHash):
    """Difference hash (brightness gradients of a 9x8 image): fast, robust to resizing."""

    name = "dhash"
    summary = "difference hash (brightness gradients)"
    default_threshold = 8

    def _hash(self, img):
        import imagehash

        return imagehash.dhash(img, hash_size=8)


class WHash(_ImageHash):
    """Wavelet hash (Haar wavelets), as in imagededup's WHash."""

    name = "whash"
    summary = "wavelet hash (Haar)"
    default_threshold = 6

    def _hash(self, img):
        import imagehash

        return imagehash.whash(img, hash_size=8)


class AHash(_ImageHash):
    """Average hash (pixels above the mean of an 8x8 image): the simplest, the least precise."""

    name = "ahash"
    summary = "average hash (the simplest)"
    default_threshold = 4

    def _hash(self, img):
        import imagehash

        return imagehash.average_hash(img, hash_size=8)


class CnnEmbedding(Method):
    """ImageNet embeddings of a pretrained backbone (its last layer removed); cosine similarity.

    The "hash" is the embedding as base64 float32 text (:func:`imgasdata.file_cache.vector_text`),
    so it travels from Ray workers and into the cache like any other hash; the cache rows are
    the features :func:`imgasdata.labelling.features.embed` reads with ``cache``.
    """

    name = "cnn"
    summary = "ImageNet embeddings of --backbone, cosine similarity"
    default_threshold = 0.85
    hash_in_table = False  # thousands of characters each

    def check_threshold(self, threshold):
        threshold = self.default_threshold if threshold is None else threshold
        if not 0 < float(threshold) <= 1:
            raise SettingsError(f"The cnn threshold is a cosine similarity in (0, 1], got {threshold}")
        return float(threshold)

    def cache_key(self, backbone=None):
        return embedding_key(backbone)  # shared with the labelling commands' features

    def job(self, backbone=None, device="auto"):
        return EmbedJob(backbone or DEFAULT_BACKBONE, device)

    @staticmethod
    def decode(hashes):
        """Embedding texts to an ``N x D`` float array."""
        return text_vectors(hashes)

    def pairs(self, hashes, threshold, other=None):
        if not len(hashes) or (other is not None and not len(other)):
            return pd.DataFrame({"i": np.array([], int), "j": np.array([], int), "distance": np.array([], float)})
        return _cosine_pairs(self.decode(hashes), threshold, None if other is None else self.decode(other))

    def distances(self, hashes, first):
        if not len(hashes):
            return np.zeros(0)
        emb = self.decode(hashes)
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
        return np.round(1 - np.einsum("ij,ij->i", emb, emb[first]), 6) + 0.0  # no "-0.0"


#: The dedup methods by name: the one table the functions and the command line read.
METHODS = {m.name: m for m in (ExactHash(), PHash(), DHash(), WHash(), AHash(), CnnEmbedding())}

#: Default thresholds per method (Hamming bits of 64; cosine similarity for ``cnn``). Chosen on
#: the benchmark corpus (benchmarks/bench_dedup.py): the largest threshold at which precision
#: stays at or above 0.95 for re-encoded, resized, cropped and watermarked copies.
DEFAULT_THRESHOLDS = {name: m.default_threshold for name, m in METHODS.items()}


def get_method(name):
    """The record of dedup method ``name``; an unknown one raises :class:`SettingsError`."""
    if name not in METHODS:
        raise SettingsError(f"Unknown deduplication method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def _check_method(name):
    get_method(name)


def _threshold(name, threshold):
    return get_method(name).check_threshold(threshold)


# --- hashing as a job, with a per-file cache ---------------------------------------------------

class HashJob(Job):
    """Hashing files with one of the image-hash methods: rows ``[path, hash, error]``."""

    columns = ("path", "hash", "error")
    owner = "the hash table's"
    chunk_size = 64

    def __init__(self, method_name):
        self.method = method_name
        self.name = f"{method_name} hashing"

    def identity(self):
        return {"method": self.method}

    def worker(self, threads=None):
        return _Hasher(METHODS[self.method])


class _Hasher:
    def __init__(self, hasher):
        self.hasher = hasher

    def batches(self, paths):
        for i in range(0, len(paths), 64):  # a progress step every 64 files
            yield [[p, *_hash_one(self.hasher, p)] for p in paths[i:i + 64]]


class EmbedJob(Job):
    """CNN embeddings of a pretrained backbone: rows ``[path, hash, error]``, the hash the embedding as text."""

    columns = ("path", "hash", "error")
    owner = "the embeddings'"
    chunk_size = 32

    def __init__(self, backbone=DEFAULT_BACKBONE, device="auto"):
        self.backbone = backbone
        self.device = device
        self.name = f"{backbone} embeddings"

    def identity(self):
        return {"backbone": self.backbone}

    def worker(self, threads=None):
        from ..backbones import default_preprocessing
        from ..classify import ImageModel
        from ..models import build_model

        model = build_model(self.backbone, num_classes=2)  # the backbone with its last layer removed
        return _Embedder(ImageModel(model.backbone, default_preprocessing(self.backbone), self.device, 32, threads))


class _Embedder:
    def __init__(self, model):
        self.model = model

    def batches(self, paths):
        for batch in self.model.outputs(paths):
            yield [[str(p), vector_text(out.numpy()), None]
                   if out is not None else [str(p), None, error] for p, out, error in batch]


def _hash_one(hasher, path):
    """``(hash, error)`` for one file; unreadable files get the reason instead of a hash (``None``: none)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # load_image refuses images over the limit with an error row; Pillow's warning adds nothing
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = load_image(path, min_size=hasher.decode_size)
        return hasher.encode(img), None
    except ImageLoadError as exc:
        return None, str(exc)


def hash_files(paths, method="phash", cache=None, progress=True, workers=None, engine="local", address=None,
               backbone=DEFAULT_BACKBONE):
    """Hash each file; return a DataFrame with one row per path: ``path, hash, error``.

    ``paths`` is a list of files (use :func:`imgasdata.images.expand_inputs` for
    folders). ``method`` is one of :data:`METHODS`: ``exact`` (SHA-256 of the decoded
    pixels), a perceptual hash (``dhash``, ``whash``, ``ahash``: 64 bits as 16 hex digits;
    ``phash``: 32 hex digits, the pHash then the dHash of the same decoding) or ``cnn``
    (the embedding of ``backbone`` as base64 float32 text). ``cache`` is a path to an
    SQLite file (created when missing): files whose stamp (size, times, inode) is in it are
    not decoded again. Unreadable files have an empty ``hash`` and the reason in ``error``.
    Hashing is a job of :func:`imgasdata.jobs.run_job`: ``engine`` ``local`` or ``ray``
    (the cluster at ``address``), ``workers`` worker processes (local default: 2 once there
    are more than 64 files; Ray: one per CPU); the rows are the same on every engine.
    """
    record = get_method(method)
    if cache and not record.takes_cache:
        raise SettingsError(f"The {method} method keeps no hash cache; leave out --cache (or use --no-cache)")
    if engine_name(engine) != "local" and not record.takes_engine:
        raise SettingsError(f"The {method} method runs on this machine only; leave out --engine")
    check_workers(workers)
    texts = [str(p) for p in paths]
    keys = [path_key(p) for p in paths]
    stamps = {k: file_stamp(p) for k, p in zip(keys, texts)}
    store = HashCache(cache) if cache else None
    key = record.cache_key(backbone)
    try:
        known = store.get(key, stamps) if store else {}
        todo = [(p, k) for p, k in zip(texts, keys) if k not in known]
        results = {}
        bar = progress_bar(total=len(todo), desc=f"{method} hashing", unit="img", enabled=progress and bool(todo))
        job = record.job(backbone)
        if workers is None and engine_name(engine) == "local" and isinstance(job, HashJob):
            workers = 2  # decoding is the whole job: two processes keep two cores busy
        position = 0
        for batch in job_rows(job, [p for p, _ in todo], engine, workers, address):
            fresh = []
            for row in batch:
                p, k = todo[position]
                position += 1
                results[k] = (row[1] or "", row[2] or "")
                if row[1] and stamps[k] is not None:
                    fresh.append((k, stamps[k], row[1]))
            if store and fresh:  # saved as it goes, so an interrupted run resumes
                store.put(key, fresh)
            bar.update(len(batch))
        bar.close()
    finally:
        if store:
            store.close()
    rows = [(path_text(p), known[k], "") if k in known else (path_text(p), *results[k]) for p, k in zip(texts, keys)]
    return pd.DataFrame(rows, columns=["path", "hash", "error"])


def hashes_to_array(hashes, part=0):
    """Hex hashes to a ``uint64`` array (for :func:`find_pairs`): their ``part``-th 16 digits.

    ``part=0`` is the pHash of a ``phash`` hash (or the whole of a 16-digit one),
    ``part=1`` its confirming dHash.
    """
    return np.array([int(h[16 * part:16 * part + 16], 16) for h in hashes], dtype=np.uint64)


def near_pairs(hashes, method="phash", threshold=None, other=None):
    """Pairs of near-duplicate hashes: a DataFrame ``i, j, distance`` (positions; ``i < j``).

    ``hashes`` are hex strings from :func:`hash_files`; with ``other`` (a second
    list), pairs are ``i`` in ``hashes`` and ``j`` in ``other``. ``distance`` is
    the Hamming distance of the (p/d/w/a)Hash. For ``phash``, a pair within the
    threshold (default 10) is kept only if its dHashes are within the threshold
    plus :data:`CONFIRM_MARGIN` too.
    """
    record = get_method(method)
    return record.pairs(list(hashes), record.check_threshold(threshold), None if other is None else list(other))


# --- search without comparing all pairs -----------------------------------------------------

def _flip_masks(width, radius):
    """Every ``width``-bit pattern with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), r)]
    return np.array(masks, dtype=np.uint64)


def find_pairs(codes, threshold, other=None, blocks=4, chunk=2_000_000):
    """All pairs of 64-bit codes within a Hamming distance, found by multi-index hashing.

    ``codes`` is a ``uint64`` array. Returns a DataFrame ``i, j, distance`` with
    ``i < j`` (positions in ``codes``); with ``other`` (a second array), pairs are
    ``i`` in ``codes`` and ``j`` in ``other`` instead. The 64 bits are cut into
    ``blocks`` blocks; two codes within ``threshold`` match within
    ``threshold // blocks`` bits on at least one block (pigeonhole), so only codes
    that share such a block are compared. Candidates are checked in chunks of at
    most ``chunk`` pairs, so memory stays linear in the number of codes plus the
    number of pairs found.
    """
    codes = np.asarray(codes, dtype=np.uint64)
    cross = other is not None
    targets = np.asarray(other, dtype=np.uint64) if cross else codes
    width = 64 // blocks
    radius = int(threshold) // blocks
    masks = _flip_masks(width, radius)
    block_mask = np.uint64((1 << width) - 1)
    found = []
    for b in range(blocks):
        shift = np.uint64(b * width)
        t_keys = (targets >> shift) & block_mask
        order = np.argsort(t_keys, kind="stable")
        sorted_keys = t_keys[order]
        q_keys = (codes >> shift) & block_mask
        for mask in masks:
            probe = q_keys ^ mask
            lo = np.searchsorted(sorted_keys, probe, "left")
            hi = np.searchsorted(sorted_keys, probe, "right")
            counts = hi - lo
            has = np.nonzero(counts)[0]
            if not len(has):
                continue
            # expand the matching ranges into candidate pairs, a slice of queries at a time
            csum = np.cumsum(counts[has])
            start = 0
            while start < len(has):
                stop = int(np.searchsorted(csum, (csum[start - 1] if start else 0) + chunk, "right"))
                stop = max(stop, start + 1)
                q = has[start:stop]
                n = counts[q]
                qi = np.repeat(q, n)
                offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
                tj = order[np.repeat(lo[q], n) + offs]
                if not cross:
                    keep = qi < tj
                    qi, tj = qi[keep], tj[keep]
                dist = np.bitwise_count(codes[qi] ^ targets[tj])
                keep = dist <= threshold
                if keep.any():
                    found.append(np.stack([qi[keep], tj[keep], dist[keep].astype(np.int64)], axis=1))
                start = stop
    if not found:
        return pd.DataFrame({"i": np.array([], int), "j": np.array([], int), "distance": np.array([], int)})
    pairs = np.unique(np.concatenate(found), axis=0)  # a pair can match on several blocks
    return pd.DataFrame(pairs, columns=["i", "j", "distance"])


def _cosine_pairs(emb, threshold, other=None, chunk=1024):
    """Pairs with cosine similarity >= threshold, a block of rows at a time (memory linear, time quadratic:
    fine for the tens of thousands of images one CPU can embed, and the distance is 1 - cosine).

    Why not an index as for the hashes: random-hyperplane codes (SimHash, 64 bits, 3 tables, radius 15)
    through :func:`find_pairs` found every pair at 0.8-0.95 on 1,148 real embeddings, but ImageNet
    features are all positive, so unrelated pictures are already at cosine 0.4-0.7 and ~2 % of all pairs
    per table are candidates: checked one by one, they took 97 s for 20,000 vectors where this
    matrix product takes 14 s (2 cores, 1280-d features).
    """
    a = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    b = a if other is None else other / np.linalg.norm(other, axis=1, keepdims=True).clip(1e-12)
    found = []
    for s in range(0, len(a), chunk):
        sim = a[s:s + chunk] @ b.T
        i, j = np.nonzero(sim >= threshold)
        i = i + s
        if other is None:
            keep = i < j
            i, j = i[keep], j[keep]
        found.append(np.stack([i, j], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), int)
    dist = 1.0 - np.einsum("ij,ij->i", a[pairs[:, 0]], b[pairs[:, 1]]) if len(pairs) else np.array([])
    return pd.DataFrame({"i": pairs[:, 0], "j": pairs[:, 1], "distance": np.round(dist, 6)})


def embed_files(paths, backbone=DEFAULT_BACKBONE, progress=True):
    """CNN embeddings of the pretrained backbone (ImageNet weights): ``(N x D array, errors)``.

    Rows of unreadable files are NaN and ``errors`` maps their positions to the reason.
    """
    table = hash_files(paths, "cnn", progress=progress, backbone=backbone)
    ok = (table["error"] == "").to_numpy()
    if not ok.any():
        raise DataError(f"None of the {len(table)} images could be read; first error: {table['error'].iloc[0]}")
    good = CnnEmbedding.decode(table.loc[ok, "hash"])
    emb = np.full((len(table), good.shape[1]), np.nan, dtype=np.float32)
    emb[ok] = good
    return emb, {i: e for i, e in enumerate(table["error"]) if e}


# --- grouping -------------------------------------------------------------------------------

def _groups(n, pairs):
    """Connected components of ``n`` items linked by ``pairs`` (union-find, by scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs["i"].to_numpy(), pairs["j"].to_numpy())), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _compute_pairs(table, method, threshold, backbone, progress, other=None):
    """Pairs among the readable rows of ``table`` (or between ``table`` and ``other``)."""
    return get_method(method).pairs(table["hash"].tolist(), threshold,
                                             None if other is None else other["hash"].tolist())


def _hash_table(paths, method, cache, backbone, progress, workers=None, engine="local", address=None):
    """Rows ``path, hash, error`` (:func:`hash_files`)."""
    return hash_files(paths, method, cache=cache, progress=progress, workers=workers, engine=engine,
                      address=address, backbone=backbone)


#: Which image of a duplicate group is kept: the one with the most pixels (then the most
#: bytes: the least compressed copy), the most recently modified, or the first path in
#: sorted order (the book's rule).
KEEP_RULES = ("largest", "newest", "first")


def _keep_order(paths, keep):
    """Positions of ``paths`` (sorted) from the one to keep first to the one to keep last, under ``keep``."""
    n = len(paths)
    if keep == "first" or n == 0:
        return np.arange(n)
    from PIL import Image

    def pixels(p):
        try:
            with Image.open(p) as im:
                w, h = im.size
        except (OSError, ValueError, Image.DecompressionBombError):
            w = h = 0
        return w * h

    stamps = [os.stat(p) for p in paths]
    if keep == "largest":
        keys = [(-pixels(p), -st.st_size, i) for i, (p, st) in enumerate(zip(paths, stamps))]
    else:
        keys = [(-st.st_mtime_ns, i) for i, st in enumerate(stamps)]
    return np.array([k[-1] for k in sorted(keys)], dtype=int)


def group_around_kept(paths, pairs, keep="largest"):
    """Duplicate groups that never chain: ``(kept position, distance to it)`` per position of ``paths``.

    ``pairs`` (``i, j, distance``) are the near-duplicate pairs among ``paths``
    (sorted). The images that have a pair are taken in the order of ``keep`` (see
    :data:`KEEP_RULES`; ties by path); each one not yet in a group becomes the
    image kept for a new group, and its partners not yet in a group join it. So
    every duplicate is within the threshold of the image kept for it, and a chain
    a-b-c with a and c too far apart is two groups, never one. An image without
    a pair is kept on its own (distance 0).
    """
    n = len(paths)
    kept = np.arange(n)
    dist = np.zeros(n, dtype=float)
    if not len(pairs):
        return kept, dist
    i, j, d = pairs["i"].to_numpy(), pairs["j"].to_numpy(), pairs["distance"].to_numpy(dtype=float)
    partners = {}
    for a, b, x in zip(np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([d, d])):
        partners.setdefault(int(a), []).append((int(b), x))
    linked = np.array(sorted(partners))
    assigned = np.zeros(n, dtype=bool)
    for k in linked[_keep_order([paths[m] for m in linked], keep)]:
        if assigned[k]:
            continue
        assigned[k] = True
        for m, x in partners[k]:
            if not assigned[m]:
                assigned[m] = True
                kept[m], dist[m] = k, x
    return kept, dist


def find_duplicates(paths, method="phash", threshold=None, cache=None, backbone=DEFAULT_BACKBONE,
                    progress=True, workers=None, engine="local", address=None, keep="largest"):
    """Group duplicate images; return one row per file.

    ``paths`` are files and/or folders (searched recursively). ``method`` is
    ``exact`` (same decoded pixels), a perceptual hash (``phash`` default,
    ``dhash``, ``whash``, ``ahash``; ``threshold`` is the largest Hamming distance
    of 64 bits, default :data:`DEFAULT_THRESHOLDS`; ``phash`` pairs are confirmed
    by dHash, see :func:`near_pairs`) or ``cnn`` (ImageNet
    embeddings of ``backbone``; ``threshold`` is the smallest cosine similarity).
    ``cache``: SQLite file of hashes to reuse between runs. ``workers``: hashing processes.
    ``keep``: which image of a group is kept (:data:`KEEP_RULES`: by default
    ``largest``, the most pixels then bytes; ``newest``; ``first`` in sorted order, as the book).

    Columns: ``path``, ``group`` (an integer shared by the image kept and its
    duplicates; every single image has its own), ``kept`` (the image kept for
    the group), ``duplicate`` (True for the others), ``distance`` (to the kept
    image: Hamming bits, or 1 - cosine similarity; never beyond the threshold,
    since groups are formed around the kept image, see :func:`group_around_kept`),
    ``group_size``, ``cluster`` (the images linked by any chain of pairs, numbered
    by their first group: what :func:`~imgasdata.prepare.split.split_dataset`
    keeps in one split, since images of two groups can still be near each other),
    ``hash`` and ``error`` (unreadable files: their own group, kept empty). Sorted by path.
    """
    _check_method(method)
    if keep not in KEEP_RULES:
        raise SettingsError(f"keep must be one of {', '.join(KEEP_RULES)}, got {keep!r}")
    threshold = _threshold(method, threshold)
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = sorted(str(p) for p in expand_inputs(paths))
    if not files:
        raise DataError(f"No image files found in {', '.join(map(str, paths))}")
    table = _hash_table(files, method, cache, backbone, progress, workers, engine, address)
    ok = table[table["error"] == ""].reset_index(drop=True)
    pairs = _compute_pairs(ok, method, threshold, backbone, progress)
    files_by_text = {path_text(f): f for f in files}  # the table's text names no file when a name is not UTF-8
    kept, dist = group_around_kept([files_by_text.get(t, t) for t in ok["path"]], pairs, keep)
    ok["kept"] = ok["path"].to_numpy()[kept] if len(ok) else []
    ok["distance"] = np.round(dist, 6) + 0.0 if method == "cnn" else dist.astype(int)  # + 0.0: no "-0.0"
    ok["component"] = _groups(len(ok), pairs) if len(ok) else np.array([], int)
    out = table.merge(ok[["path", "component", "kept", "distance"]], on="path", how="left")
    # group numbers follow the sorted order of the kept paths; unreadable files get their own
    out["kept"] = out["kept"].fillna("")
    key = out["kept"].where(out["kept"] != "", out["path"])
    out["group"] = pd.factorize(key, sort=True)[0]
    out["group_size"] = out.groupby("group")["path"].transform("size")
    component = out["component"].fillna(-1 - out.index.to_series())  # unreadable files: their own
    out["cluster"] = out.groupby(component)["group"].transform("min").astype(int)
    out["duplicate"] = (out["kept"] != "") & (out["kept"] != out["path"])
    if not METHODS[method].hash_in_table:
        out["hash"] = ""  # embeddings are not written to a CSV
    cols = ["path", "group", "kept", "duplicate", "distance", "group_size", "cluster", "hash", "error"]
    return out[cols].sort_values("path").reset_index(drop=True)


def find_cross_duplicates(reference, query, method="phash", threshold=None, cache=None,
                          backbone=DEFAULT_BACKBONE, progress=True, workers=None, engine="local", address=None):
    """Images of ``query`` (e.g. a test set) with a near-duplicate in ``reference`` (e.g. the training set).

    Returns one row per file of ``query``: ``path``, ``match`` (the closest
    reference image within the threshold, empty if none), ``distance``,
    ``n_matches`` (how many reference images are within the threshold) and
    ``error``. A test image with a match leaks its answer into training.
    """
    _check_method(method)
    threshold = _threshold(method, threshold)
    ref_files = sorted(str(p) for p in expand_inputs(reference))
    qry_files = sorted(str(p) for p in expand_inputs(query))
    if not ref_files or not qry_files:
        raise DataError("Both sets need at least one image file for a cross-set search")
    ref = _hash_table(ref_files, method, cache, backbone, progress, workers, engine, address)
    qry = _hash_table(qry_files, method, cache, backbone, progress, workers, engine, address)
    ref_ok = ref[ref["error"] == ""].reset_index(drop=True)
    qry_ok = qry[qry["error"] == ""].reset_index(drop=True)
    pairs = _compute_pairs(qry_ok, method, threshold, backbone, progress, other=ref_ok)
    pairs = pairs.sort_values(["i", "distance", "j"])
    best = pairs.drop_duplicates("i").set_index("i")
    n = pairs.groupby("i").size()
    qry_ok["match"] = [ref_ok.at[best.at[i, "j"], "path"] if i in best.index else "" for i in qry_ok.index]
    qry_ok["distance"] = [best.at[i, "distance"] if i in best.index else np.nan for i in qry_ok.index]
    qry_ok["n_matches"] = [int(n.get(i, 0)) for i in qry_ok.index]
    out = qry.merge(qry_ok[["path", "match", "distance", "n_matches"]], on="path", how="left")
    out["match"] = out["match"].fillna("")
    out["n_matches"] = out["n_matches"].fillna(0).astype(int)
    return out[["path", "match", "distance", "n_matches", "error"]]


def copy_unique(duplicates, out_dir, link="copy", overwrite=False, inputs=()):
    """Copy (or link) the kept image of every group into ``out_dir``; returns the list of new paths.

    File names are kept; a name that occurs twice gets a numbered suffix. The
    originals are never touched: ``out_dir`` may not be, or be inside, a folder of
    ``inputs`` or of the images (:func:`~imgasdata.outputs.refuse_inside`);
    a destination that already is the image is left alone; another file of that
    name is replaced only with ``overwrite``.
    """
    from ..outputs import refuse_inside
    from ..paths import real_path
    from .place import place_file, unique_names

    readable = duplicates[duplicates["error"] == ""]
    files = {p: real_path(p) for p in readable["path"]}  # a non-UTF-8 name is written as \xNN text
    refuse_inside(out_dir, [*inputs, *{f.parent for f in files.values()}], "--copy-unique",
                  files_stand_for_folders=True)
    keep = [files[p] for p in readable.loc[~readable["duplicate"].astype(bool), "path"]]
    return [place_file(p, Path(out_dir) / name, link, overwrite) for p, name in zip(keep, unique_names(keep))]


# --- planted near-duplicates and evaluation -------------------------------------------------

#: The planted transformations; ``flip`` is a separate, harder case (hashes are not mirror-invariant).
TRANSFORMS = ("jpeg70", "resize50", "crop5", "watermark", "flip")


def _transform(img, kind):
    from PIL import Image, ImageDraw, ImageOps

    w, h = img.size
    if kind == "jpeg70":
        return img, {"format": "JPEG", "quality": 70}
    if kind == "resize50":
        return img.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS), {}
    if kind == "crop5":
        dx, dy = round(w * 0.05), round(h * 0.05)
        return img.crop((dx, dy, w - dx, h - dy)), {}
    if kind == "watermark":
        from PIL import ImageFont

        # small: the text is about 1/14 of the picture's height (at least 8 px), in a corner
        size = max(8, h // 14)
        try:
            font = ImageFont.load_default(size=size)
        except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
            font = ImageFont.load_default()
        out = img.copy()
        draw = ImageDraw.Draw(out)
        x, y = max(1, w // 50), h - size - max(1, h // 50)
        draw.text((x + 1, y + 1), "© 2024", fill=(40, 40, 40, 255)[: len(out.getbands())], font=font)
        draw.text((x, y), "© 2024", fill=(255, 255, 255, 255)[: len(out.getbands())], font=font)
        return out, {}
    if kind == "flip":
        return ImageOps.mirror(img), {}
    raise SettingsError(f"Unknown transformation {kind!r}; choose from {', '.join(TRANSFORMS)}")


def _transparent(path):
    """The picture as RGBA when it has transparency, else ``None``."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            return im.convert("RGBA")
    return None


def plant_duplicates(sources, out_dir, n=None, transforms=TRANSFORMS, seed=0, copy_originals=True):
    """Write transformed copies of some images into ``out_dir``; return the ground truth.

    ``sources`` are image files or folders. ``n`` originals are drawn with ``seed``
    (default: all), and each gets one copy per transformation in ``transforms``
    (:data:`TRANSFORMS`: JPEG at quality 70, 50 % resize, 5 % crop per side, a
    small text watermark about 1/14 of the height, a horizontal flip). The JPEG copy
    of a transparent image is laid on white; the PNG copies keep the transparency. With ``copy_originals`` every source
    image is copied into ``out_dir/originals`` too, so the folder holds the whole
    corpus. Returns a DataFrame ``original, copy, transform`` (paths as written).
    """
    import random

    files = sorted(str(p) for p in expand_inputs(sources))
    if not files:
        raise DataError(f"No images found in {sources}")
    out_dir = Path(out_dir)
    (out_dir / "originals").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    chosen = set(rng.sample(files, n) if n is not None and n < len(files) else files)
    rows, names = [], {}
    for src in files:
        stem = Path(src).stem
        k = names.get(stem, 0)
        names[stem] = k + 1
        stem = stem if k == 0 else f"{stem}_{k}"
        if copy_originals:
            orig = out_dir / "originals" / f"{stem}{Path(src).suffix.lower()}"
            if not orig.exists():
                orig.write_bytes(Path(src).read_bytes())
            original = str(orig)
        else:
            original = src
        if src not in chosen:
            continue
        try:
            img = load_image(src)  # on white: what a JPEG re-encode of a transparent picture shows
            rgba = _transparent(src)
        except ImageLoadError:
            continue
        for kind in transforms:
            # PNG copies keep the transparency of a transparent original, as an edit would
            out, save = _transform(img if kind == "jpeg70" or rgba is None else rgba, kind)
            ext = ".jpg" if save.get("format") == "JPEG" else ".png"
            dest = out_dir / kind / f"{stem}{ext}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            out.save(dest, **save)
            rows.append((original, str(dest), kind))
    return pd.DataFrame(rows, columns=["original", "copy", "transform"])


def _pair_set(found):
    """Unordered pairs of path strings from a duplicates table, a mapping or a list of pairs."""
    pairs = set()
    if isinstance(found, pd.DataFrame):
        if {"original", "copy"} <= set(found.columns):
            it = zip(found["original"], found["copy"])
        else:
            ok = found[(found["error"] == "") & (found["group_size"] > 1)]
            it = (pair for _, g in ok.groupby("group") for pair in itertools.combinations(g["path"], 2))
    elif isinstance(found, dict):
        it = ((k, v) for k, vs in found.items() for v in vs)
    else:
        it = iter(found)
    for a, b in it:
        a, b = str(a), str(b)
        if a != b:
            pairs.add((a, b) if a < b else (b, a))
    return pairs


def _closure(pairs):
    """All pairs within the connected groups of ``pairs`` (copies of one original are duplicates of each other)."""
    items = sorted({p for pair in pairs for p in pair})
    index = {p: i for i, p in enumerate(items)}
    df = pd.DataFrame([(index[a], index[b]) for a, b in pairs], columns=["i", "j"])
    labels = _groups(len(items), df) if items else []
    groups = {}
    for p, lab in zip(items, labels):
        groups.setdefault(lab, []).append(p)
    return {tuple(sorted(c)) for g in groups.values() for c in itertools.combinations(g, 2)}


def evaluate_duplicates(found, truth, files=None):
    """Precision and recall of duplicate pairs against a ground truth, in imagededup's terms.

    ``found``: a :func:`find_duplicates` table (all pairs within a group count),
    a mapping ``file -> [duplicates]`` (imagededup's output) or a list of pairs.
    ``truth``: the table from :func:`plant_duplicates`, a mapping or pairs; the
    copies of one original are also duplicates of each other. With ``files``,
    only pairs of which both members are in ``files`` are counted (to score one
    transformation on its own). Returns a dict ``precision, recall, f1,
    true_pairs, found_pairs, correct_pairs``.
    """
    found_pairs, true_pairs = _pair_set(found), _closure(_pair_set(truth))
    if files is not None:
        keep = {str(f) for f in files}
        found_pairs = {p for p in found_pairs if p[0] in keep and p[1] in keep}
        true_pairs = {p for p in true_pairs if p[0] in keep and p[1] in keep}
    correct = len(found_pairs & true_pairs)
    precision = correct / len(found_pairs) if found_pairs else 1.0
    recall = correct / len(true_pairs) if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": len(true_pairs),
            "found_pairs": len(found_pairs), "correct_pairs": correct}

"""The one business flow, with no protocol in it: (model ref, input) → cache → batching → model.

The prediction cache keeps one entry per instance (keyed by the artifact's sha256, what is
asked and the instance: serving/cache.py). A request looks all its instances up at once, runs
the model once on the misses only and answers in the request's order. CACHE_ROUTES says which
routes consult it (`Cached` says how it served them, for the X-Cache header).

Adapters for every protocol call these methods with decoded, plain-Python input and encode what
comes back; so a behaviour (validation, caching, batching, error statuses) is the same on every
route.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from mlapi import metrics
from mlapi.serving.batching import MicroBatcher, merge_results, predict_merged
from mlapi.serving.cache import MISSING, PredictionCache, cache_key, instance_keys, model_identity
from mlapi.config import Settings
from mlapi.errors import InvalidInput, ModelFailure, RecordNotFound, TooManyRows, shown
from mlapi.store.feature_store import FeatureStore
from mlapi.serving.feature_matrices import to_feature_matrix
from mlapi.serving.frames import as_frame
from mlapi.serving.instances import Columns, to_model_input
from mlapi.serving.model import TABULAR, TEXT, PredictionResult, ServedModel
from mlapi.serving.answers import Cached, RecordPredictions, as_record, dense_row
from mlapi.serving.records import record_to_instance
from mlapi.serving.registry import ModelRegistry
from mlapi.serving.row_count import row_count

if TYPE_CHECKING:
    from mlapi.serving.cache_redis import RedisPredictionCache


# What a cached answer was computed by: part of its key.
PREDICT, PREDICT_FEATURES, FEATURES = "predict", "predict_features", "features"
# The routes CACHE_ROUTES names (config.CACHE_ROUTE_KINDS).
TEXT_ROUTES, PREDICT_ROUTES, PREDICT_FEATURES_ROUTES, BY_ID_ROUTES = "text", "predict", "predict_features", "by_id"


@dataclass(frozen=True)
class ModelRef:
    """Which model a request is for; None means the default model / its default version."""

    name: str | None = None
    version: str | None = None


class InferenceService:
    """The one predict path, whatever the route: input → (cache) → micro-batching → model.

    Every operation resolves the model and validates its input alone, then reaches the model
    through `_compute`, where micro-batching merges concurrent calls for one model version when
    MAX_BATCH_SIZE > 1. Every route's operation goes through `_answer`, which consults the
    prediction cache when CACHE_ROUTES names the route (Pub/Sub and bulk scoring never do).
    """

    def __init__(self, registry: ModelRegistry, cache: PredictionCache | RedisPredictionCache | None,
                 store: FeatureStore | None = None,
                 max_batch_size: int = 0, max_batch_wait_ms: float = 0.0, max_rows: int = Settings.max_rows,
                 cache_routes: frozenset = Settings.cache_routes):
        self.registry = registry
        self.max_rows = max_rows
        self.cache = cache
        self.cache_routes = cache_routes if cache is not None and cache.enabled else frozenset()
        self.store = store
        self._batch_rows = max_batch_size
        self._batch_wait_s = max_batch_wait_ms / 1000
        self._batchers: dict[tuple[str, str, str], tuple[ServedModel, MicroBatcher]] = {}
        self._batchers_lock = threading.Lock()

    def model(self, ref: ModelRef) -> ServedModel:
        model = self.registry.get(ref.name, ref.version)
        metrics.note_model(model.name, model.version)
        return model

    # ---- instances in, one model call -------------------------------------------------
    def predict(self, ref: ModelRef, instances: Any, probabilities: bool | None = None) -> tuple[ServedModel, Cached]:
        self._limit_rows(row_count(instances))
        model = self.model(ref)
        # frameless: these inputs reach the model alone, or as DataFrames through _compute
        if PREDICT_ROUTES not in self.cache_routes:  # the hot route, when uncached: as it was
            return model, Cached(self._compute(model, PREDICT, to_model_input(model, instances, True), probabilities))
        if isinstance(instances, Columns):  # dataframe_split: its rows, under its columns
            columns = instances.columns
            return model, self._answer(model, PREDICT_ROUTES, PREDICT, instances.data, probabilities,
                                       lambda rows: to_model_input(model, Columns(columns, rows), True),
                                       columns=columns)
        return model, self._answer(model, PREDICT_ROUTES, PREDICT, instances, probabilities,
                                   lambda rows: to_model_input(model, rows, True))

    def features(self, ref: ModelRef, instances: Any):
        self._limit_rows(row_count(instances))
        model = self.model(ref)
        return model, model.features(to_model_input(model, instances, True))

    def predict_features(self, ref: ModelRef, features: Any, probabilities: bool | None = None) -> tuple[ServedModel, Cached]:
        """Dense rows consult the cache row by row; a CSR matrix (an object) passes it by."""
        self._limit_rows(row_count(features, features=True))
        model = self.model(ref)
        return model, self._answer(model, PREDICT_FEATURES_ROUTES, PREDICT_FEATURES, features, probabilities,
                                   lambda rows: to_feature_matrix(model, rows))

    def _limit_rows(self, rows: int) -> None:
        """MAX_ROWS, counted on the decoded request before any row is converted: a million rows
        in a 10 MB body took a worker 66 s and 614 MB. (Pub/Sub messages have MAX_IDS.)"""
        if rows > self.max_rows:
            raise TooManyRows(f"too many rows: this request has {rows}, and the limit is {self.max_rows} per request "
                              f"(MAX_ROWS); send at most {self.max_rows} rows per request (score a whole file with "
                              f"`mlapi batch-predict`), or raise MAX_ROWS on the server",
                              rows=rows, max_rows=self.max_rows)

    # ---- by id: the features come from the online store ----------------------------------
    def predict_id(self, ref: ModelRef, entity_id: str) -> RecordPredictions:
        """One record: unknown id → 404, a record the model cannot use → 422."""
        model = self.model(ref)
        record = self._store().lookup([entity_id]).get(entity_id)
        if record is None:
            raise RecordNotFound(f"no record with id {shown(entity_id)} in the feature store; store it first "
                                 f"(`mlapi features add` or `mlapi features import`), or send its features in "
                                 f"the body to POST /models/{model.name}/predict", id=entity_id)
        instance, data = self._instance(model, entity_id, record)
        try:  # keyed by the record's values: a record changed in the store is a miss
            cached = self._answer(model, BY_ID_ROUTES, PREDICT, [instance], None,
                                  lambda rows: to_model_input(model, rows))
        except InvalidInput as exc:
            named = as_record(model, exc, entity_id, data)
            if named is exc:  # nothing to add: as it is
                raise
            raise named from exc
        return RecordPredictions(model, [entity_id], [data], cached.value, {}, cached)

    def predict_ids(self, ref: ModelRef, entity_ids: list[str]) -> RecordPredictions:
        """Many records in one model call; unknown ids and unusable records are reported per id
        (batch inference stores them as failures instead of failing the whole message)."""
        model = self.model(ref)
        records = self._store().lookup(entity_ids)
        failures: dict[str, str] = {}
        ids, instances, data = [], [], []
        for entity_id in dict.fromkeys(entity_ids):  # a repeated id is scored once
            record = records.get(entity_id)
            if record is None:
                failures[entity_id] = f"no record with id {shown(entity_id)} in the feature store"
                continue
            try:
                instance, record_data = self._instance(model, entity_id, record)
            except InvalidInput as exc:
                failures[entity_id] = exc.message
                continue
            ids.append(entity_id)
            instances.append([instance])
            data.append(record_data)
        # One merged call; a record the model rejects is isolated by the rule micro-batching
        # uses too (batching.predict_merged), so it fails alone. The retries go to the model
        # directly: a message's records queued one by one behind other requests could outlast
        # Pub/Sub's acknowledgement deadline.
        outcomes = predict_merged(
            lambda rows, probabilities: self._compute(model, PREDICT, to_model_input(model, rows), probabilities),
            instances, [None] * len(instances),
            alone=lambda rows, probabilities: model.predict(to_model_input(model, rows), probabilities),
        ) if instances else []
        kept = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, InvalidInput):  # the record alone (predict_merged): its instance 0
                failures[ids[index]] = as_record(model, outcome, ids[index], data[index]).message
            elif isinstance(outcome, ModelFailure):
                # the model's code fails on this record (logged): redelivering it would fail again
                failures[ids[index]] = outcome.message
            elif isinstance(outcome, BaseException):
                raise outcome  # a bug, or the model not ready: the whole message is retried
            else:
                kept.append(index)
        if not kept:
            return RecordPredictions(model, [], [], None, failures)
        merged = merge_results([outcomes[index] for index in kept])
        return RecordPredictions(model, [ids[i] for i in kept], [data[i] for i in kept], merged, failures)

    def _instance(self, model: ServedModel, entity_id: str, record: dict):
        store = self._store()
        return record_to_instance(model, entity_id, record, store.text_column, store.feature_columns)

    def _store(self) -> FeatureStore:
        if self.store is None:
            raise RecordNotFound("no feature store is configured: predicting by id needs FEATURE_STORE_URL set "
                                 "on the server; send the features in the body to POST /models/<name>/predict instead")
        return self.store

    # ---- single inputs: the text routes (their own `skip_cache`) ------------------------------
    def text_to_features(self, ref: ModelRef, text: str, skip_cache: bool = False) -> tuple[ServedModel, Cached]:
        model = self._text_model(ref)
        return model, self._answer(model, TEXT_ROUTES, FEATURES, [text], None, lambda texts: texts, skip_cache)

    def features_to_prediction(self, ref: ModelRef, features: list, skip_cache: bool = False) -> tuple[ServedModel, Cached]:
        model = self.model(ref)
        if not isinstance(features, list) or (features and isinstance(features[0], list)):
            raise InvalidInput('features must be one flat list of numbers: send {"features": [1.0, 2.0, ...]}, '
                               'the feature values of one instance')
        return model, self._answer(model, TEXT_ROUTES, PREDICT_FEATURES, [features], True,
                                   lambda rows: to_feature_matrix(model, rows), skip_cache)

    def text_to_prediction(self, ref: ModelRef, text: str, skip_cache: bool = False) -> tuple[ServedModel, Cached]:
        model = self._text_model(ref)
        return model, self._answer(model, TEXT_ROUTES, PREDICT, [text], True,
                                   lambda rows: to_model_input(model, rows), skip_cache)

    def _text_model(self, ref: ModelRef) -> ServedModel:
        model = self.model(ref)
        if model.input_kind != TEXT:
            raise InvalidInput(f"model {model.name}:{model.version} takes tabular features, not text; "
                               f"send them as features, or as instances to its predict route")
        return model

    # ---- the path every operation shares --------------------------------------------------
    def _answer(self, model: ServedModel, route: str, operation: str, instances: Any, probabilities: bool | None,
                decode: Callable[[Any], Any], skip_cache: bool = False, columns: list | None = None) -> Cached:
        """instances (as decoded from the request, one per row) → cache → decode → compute.

        Keyed by the instances themselves, so a hit costs neither validation nor the model;
        the misses alone are decoded (validated alone: a bad request fails alone, before any
        batch) and computed, in one model call, and written back without waiting."""
        if route not in self.cache_routes or skip_cache or type(instances) is not list or not instances:
            return Cached(self._run(model, operation, decode(instances), probabilities))
        # Asked for probabilities and none to give, or not asked: one answer, one entry.
        wanted = None if operation == FEATURES else model.gives_probabilities(probabilities)
        identity = f"{model_identity(model)}:{operation}:{wanted}"
        if columns is not None:
            identity += ":" + cache_key(columns)
        keys = instance_keys(identity, instances, model.input_kind == TABULAR and not model.string_columns
                             or operation == PREDICT_FEATURES)
        found = self.cache.get_many(keys)
        misses = [index for index, value in enumerate(found) if value is MISSING]
        metrics.record_cache(len(keys) - len(misses), len(misses))
        if misses:
            fresh = self._run_misses(model, operation, instances, misses, wanted, decode)
            self.cache.put_many([(keys[index], answer) for index, answer in zip(misses, fresh)])
            for index, answer in zip(misses, fresh):
                found[index] = answer
        value = found[0] if operation == FEATURES else PredictionResult.of_instances(found, model.classes)
        return Cached(value, len(keys) - len(misses), len(keys))

    def _run_misses(self, model: ServedModel, operation: str, instances: list, misses: list[int],
                    wanted: bool | None, decode: Callable[[Any], Any]) -> list:
        """The answers of the instances the cache did not have, one per instance."""
        rows = instances if len(misses) == len(instances) else [instances[index] for index in misses]
        try:
            value = self._run(model, operation, decode(rows), wanted)
        except InvalidInput:
            if rows is instances:
                raise
            # Rejected among the misses: the whole request again, so the error names the
            # instance by its place in the request, as without the cache.
            self._run(model, operation, decode(instances), wanted)
            raise
        return [value] if operation == FEATURES else value.instances()

    def _run(self, model: ServedModel, operation: str, model_input: Any, wanted: bool | None):
        if operation == FEATURES:
            return dense_row(model.features(model_input))
        return self._compute(model, operation, model_input, wanted)

    def _compute(self, model: ServedModel, operation: str, model_input: Any,
                 probabilities: bool | None) -> PredictionResult:
        """The model call: merged with concurrent ones (same model version and operation) when
        micro-batching is on, else at once."""
        predict = model.predict if operation == PREDICT else model.predict_features
        if self._batch_rows <= 1:
            return predict(model_input, probabilities)
        model_input = as_frame(model_input)  # merged with others' rows: as a DataFrame
        # One batcher per model object: after a reload in this process (registry.swap) the same
        # name and version is a new model, which must not be answered by the old one's batcher.
        key = (model.name, model.version, operation)
        bound = self._batchers.get(key)
        if bound is None or bound[0] is not model:
            with self._batchers_lock:
                bound = self._batchers.get(key)
                if bound is None or bound[0] is not model:
                    bound = self._batchers[key] = (model, MicroBatcher(predict, self._batch_rows, self._batch_wait_s))
        return bound[1].predict(model_input, probabilities)


__all__ = ["InferenceService", "ModelRef", "Cached", "PredictionResult"]

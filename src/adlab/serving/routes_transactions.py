"""`adlab-serve` routes of a customers package (data kind `transactions`: customer value or segments).

- `POST /score`: `{"transactions": [{customer: id, date: "YYYY-MM-DD", amount: n[, quantity, product]}, ...],
  "as_of": "YYYY-MM-DD"}` (the log's column names as `/metadata` lists them; `as_of` optional, default the
  training cutoff) -> `{"customers": [{"customer": id, ...answers}], "not_scored": [id, ...], "as_of": day,
  "model_version": v}`. Answers per customer: value packages `predicted_spend`, `buy_probability`,
  `decile`, `tier`; segments packages `segment`, `segment_name`, `distance` (`CustomerScorer`).
- `GET /metadata` (served by `create_app`): the columns a transaction carries, the cutoff, the features
  computed from them, the answers and their rules, training metrics, limits.

Customer ids are strings or integers (`7` and `"7"` are one customer; answers give them as strings).
Dates are ISO days whatever the training file's format; amounts and quantities are JSON numbers within
±`MAX_AMOUNT` (non-negative when the model refuses refunds). A customer with no purchase on or before
`as_of` is listed in `not_scored`; one whose values overflow the model's arithmetic gets null answers and
a warning. A body that does not fit (not an object, another key, a missing column, a value of the wrong
type, a date that is not a day, over `max_batch_rows` transactions: 413) is refused with a 4xx whose
`detail` names the input and `feature` the key.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

from adlab.errors import AdlabError
from adlab.serving.customers import CustomerScorer
from adlab.serving.package import ModelPackage
from adlab.serving.routes import (
    KindService,
    ServiceSettings,
    error,
    json_response,
    operation,
    package_facts,
    read_json,
)

MAX_AMOUNT = 1e9  # largest |amount| and |quantity| a request may carry
MAX_ID_CHARS = 200  # longest customer id or product a request may carry
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
DAY = {"type": "string", "format": "date", "description": "an ISO day, YYYY-MM-DD"}
REFUSALS = {
    "413": "body or number of transactions over the limit",
    "415": "a body that is not declared as JSON",
    "422": "malformed JSON or a transaction that does not fit the schema",
}


class RequestError(AdlabError):
    """A request that does not fit: `key` names the offending key, `status` the answer (422, or 413)."""

    def __init__(self, message: str, key: str | None = None, status: int = 422):
        super().__init__(message)
        self.key, self.status = key, status


def transaction_schema(scorer: CustomerScorer) -> dict[str, Any]:
    """JSON Schema of one transaction: the training log's columns, each required, nothing else."""
    columns = scorer.columns
    number = {"type": "number", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT}
    amount = {**number, "minimum": 0} if scorer.log_format.refunds == "error" else number
    text_or_id = {"type": ["string", "integer"], "maxLength": MAX_ID_CHARS}
    kinds = {"customer": text_or_id, "date": DAY, "amount": amount, "quantity": number, "product": text_or_id}
    return {
        "type": "object",
        "properties": {name: kinds[role] for role, name in columns.items()},
        "required": list(columns.values()),
        "additionalProperties": False,
    }


def answer_schema(scorer: CustomerScorer) -> dict[str, Any]:
    """JSON Schema of a 200 answer."""
    nullable_number = {"type": ["number", "null"]}
    kinds: dict[str, dict[str, Any]] = {
        "predicted_spend": nullable_number,
        "buy_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "decile": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
        "tier": {"enum": ["A", "B", "C", None]},
        "segment": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": max(len(scorer.segment_names) - 1, 0),
        },
        "segment_name": {"type": ["string", "null"]},
        "distance": {"type": ["number", "null"], "minimum": 0},
    }
    names = scorer.answer_columns()
    customer = {
        "type": "object",
        "properties": {"customer": {"type": "string"}, **{name: kinds[name] for name in names}},
        "required": ["customer", *names],
        "additionalProperties": False,
    }
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "type": "object",
        "properties": {
            "customers": {"type": "array", "items": customer},
            "not_scored": strings,
            "as_of": {"type": "string"},
            "model_version": {"type": "string"},
            "warnings": strings,
        },
        "required": ["customers", "not_scored", "as_of", "model_version"],
        "additionalProperties": False,
    }


def _customer(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RequestError(f"{key}={value!r}: expected a customer id (a string or an integer)", key)
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise RequestError(f"{key}: an id of {len(text)} characters; at most {MAX_ID_CHARS}", key)
    return text


def _day(value: Any, key: str) -> str:
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    shown = value[:40] if isinstance(value, str) else value
    raise RequestError(f"{key}={shown!r}: expected an ISO day such as 1997-09-30 (YYYY-MM-DD)", key)


def _number(value: Any, key: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{key}={value!r}: expected a number", key)
    number = float(value) if not isinstance(value, int) or abs(value) <= MAX_AMOUNT else math.inf
    if not minimum <= number <= MAX_AMOUNT:
        raise RequestError(f"{key}={value!r}: expected a number from {minimum:g} to {MAX_AMOUNT:g}", key)
    return number


def request_log(payload: Any, scorer: CustomerScorer, max_rows: int) -> tuple[pd.DataFrame, str | None]:
    """The request's transactions as a frame of the log's columns, and its `as_of`; `RequestError` (413 for
    too many transactions) naming the key that does not fit."""
    if type(payload) is not dict or "transactions" not in payload or set(payload) - {"transactions", "as_of"}:
        raise RequestError('expected a JSON object {"transactions": [{...}, ...], "as_of": "YYYY-MM-DD"}')
    lines = payload["transactions"]
    if type(lines) is not list or not lines:
        raise RequestError("transactions: expected a non-empty list of transactions", "transactions")
    if len(lines) > max_rows:
        raise RequestError(
            f"{len(lines)} transactions in one request; at most {max_rows}", "transactions", status=413
        )
    as_of = payload.get("as_of")
    as_of = None if as_of is None else _day(as_of, "as_of")
    columns = scorer.columns
    names = set(columns.values())
    amount_minimum = 0.0 if scorer.log_format.refunds == "error" else -MAX_AMOUNT
    readers = {
        "customer": lambda v, k: _customer(v, k),
        "date": lambda v, k: _day(v, k),
        "amount": lambda v, k: _number(v, k, amount_minimum),
        "quantity": lambda v, k: _number(v, k, -MAX_AMOUNT),
        "product": lambda v, k: _customer(v, k),
    }
    values: dict[str, list[Any]] = {name: [] for name in columns.values()}
    for position, line in enumerate(lines):
        if type(line) is not dict:
            raise RequestError(
                f"transactions[{position}]: expected an object of {sorted(names)}", "transactions"
            )
        if set(line) != names:
            extra, missing = sorted(set(line) - names), sorted(names - set(line))
            key = (missing or extra)[0]
            raise RequestError(
                f"transactions[{position}]: {'missing ' + str(missing) if missing else ''}"
                f"{'; ' if missing and extra else ''}{'unknown ' + str(extra) if extra else ''}; "
                f"expected exactly {sorted(names)}",
                str(key),
            )
        for role, name in columns.items():
            values[name].append(readers[role](line[name], name))
    return pd.DataFrame(values), as_of


def add_routes(
    app: FastAPI, package: ModelPackage, settings: ServiceSettings, scorer: CustomerScorer | None = None
) -> KindService:
    """Add /score for a customers package (see the module docstring of serving/routes.py)."""
    scorer = scorer if scorer is not None else CustomerScorer(package, settings.threads)
    version = scorer.model_version
    max_rows = settings.max_batch_rows

    async def score(request: Request) -> Response:
        payload, refused = await read_json(request)
        if refused is not None:
            return refused
        try:
            frame, as_of = request_log(payload, scorer, max_rows)
            log = scorer.validated_log(frame, "transactions", iso_dates=True)
            scores = scorer.score_log(log, scorer.as_of_day(as_of))
        except RequestError as invalid:
            return error(invalid.status, str(invalid), invalid.key)
        except AdlabError as invalid:
            return error(422, str(invalid))
        answer: dict[str, Any] = {
            "customers": scores.records(),
            "not_scored": scores.not_scored,
            "as_of": str(scores.as_of.date()),
            "model_version": version,
        }
        if scores.overflowed:
            answer["warnings"] = [
                f"customer {customer}: values outside what the model's arithmetic holds; no answer"
                for customer in scores.overflowed
            ]
        return json_response(200, answer)

    app.add_route("/score", score, methods=["POST"])
    body = {
        "type": "object",
        "properties": {
            "transactions": {
                "type": "array",
                "items": transaction_schema(scorer),
                "minItems": 1,
                "maxItems": max_rows,
            },
            "as_of": {
                **DAY,
                "type": ["string", "null"],
                "description": "an ISO day; null or absent: the cutoff",
            },
        },
        "required": ["transactions"],
        "additionalProperties": False,
    }
    what = "customer value" if scorer.task == "customer_value" else "customer segments"
    described = "one answer per customer with a purchase on or before as_of; the others in not_scored"
    metadata = {
        **package_facts(package),
        **scorer.describe(),
        "request": {
            "transaction": transaction_schema(scorer),
            "dates": "ISO days (YYYY-MM-DD) whatever the training file's date format",
        },
        "training_metrics": package.metadata.get("training_metrics", {}),
        "limits": settings.limits,
    }
    return KindService(
        title=f"adlab {what}",
        model_version=version,
        metadata=metadata,
        paths={
            "/score": operation(f"Score customers ({what})", body, answer_schema(scorer), described, REFUSALS)
        },
    )

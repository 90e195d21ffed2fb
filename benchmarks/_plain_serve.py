"""The baseline for `bench_serve`: the same predict path in a plain FastAPI app under uvicorn.

Same auth (SHA-256 digest compared in constant time), header checks, body limit, validation and
`Predictor` as the Serve app, without Ray, batching, canary or monitoring:

    BENCH_BUNDLE=DIR BENCH_TOKEN=T python -m uvicorn benchmarks._plain_serve:app --port 8001
"""

from __future__ import annotations

import hashlib
import hmac
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ray_ml.serve import RequestError, RequestLimits, RequestValidator
from ray_ml.train import Predictor, load_bundle

_bundle = load_bundle(os.environ["BENCH_BUNDLE"])
_predictor = Predictor(_bundle)
_limits = RequestLimits()
_validator = RequestValidator(_bundle.contract, _limits)
_digest = hashlib.sha256(os.environ["BENCH_TOKEN"].encode()).digest()

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/predict")
async def predict(request: Request) -> Response:
    _, _, token = request.headers.get("authorization", "").partition(" ")
    if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), _digest):
        raise RequestError(403, "forbidden", "the bearer token is not valid", "authorization")
    _validator.check_headers(
        request.headers.get("content-type"), request.headers.get("content-length")
    )
    body = await request.body()
    result = _predictor.predict(_validator.parse(body))
    return JSONResponse({**result, "model_version": "plain"})

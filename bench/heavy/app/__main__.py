"""bench/deps_build.py's dependency-heavy service: a Flask app that uses what it installs."""

import os

import pandas as pd
from flask import Flask
from pydantic import BaseModel
from sqlalchemy import create_engine, text

BASE = os.environ.get("BASE_PATH", "/heavy/")
app = Flask(__name__)
engine = create_engine("sqlite://")


class Summary(BaseModel):
    rows: int
    mean: float


@app.get(BASE)
def index() -> str:
    frame = pd.DataFrame({"x": [1, 2, 3, 4]})
    with engine.connect() as conn:
        one = conn.execute(text("select 1")).scalar_one()
    return Summary(rows=len(frame) * one, mean=float(frame.x.mean())).model_dump_json()


@app.get(BASE + "health")
def health() -> str:
    return "ok"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))

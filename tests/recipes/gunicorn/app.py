"""A WSGI app as gunicorn runs it: a Flask app answering with its pid,
which tells the harness (tests/recipes/run.py) which worker served it."""
import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"gunicorn worker {os.getpid()}\n"

"""A Flask app as waitress serves it; answers with its pid (the harness
counts the workers by it)."""
import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return f"waitress worker {os.getpid()}\n"

"""Ask a running ragfirst service a question and print the cited answer.

python scripts/ask.py "How many office days per week?" [--url http://127.0.0.1:8000] [--generator local]
                      [--key KEY]   (or RAGFIRST_KEY=KEY, when the service has RAG_API_KEYS)
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx
from rich.console import Console

console = Console()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--collection", default="default")
    parser.add_argument("--generator", default=None)
    parser.add_argument("--key", default=os.environ.get("RAGFIRST_KEY"), help="API key (read or admin)")
    args = parser.parse_args()
    payload = {"question": args.question, "collection": args.collection, "generator": args.generator}
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    response = httpx.post(f"{args.url}/v1/query", json=payload, headers=headers, timeout=120)
    body = response.json()
    if response.status_code != 200:
        console.print(f"[red]{response.status_code}[/red] {body.get('detail')}")
        return 1
    console.print(f"[bold]Q:[/bold] {args.question}")
    console.print(f"[bold]A:[/bold] {body['answer']}")
    fallback = " (model text failed verification: extractive fallback)" if body["fallback"] else ""
    console.print(f"[dim]written by {body['generator']} / {body['model']}{fallback}[/dim]")
    for c in body["citations"]:
        mark = "[green]verified[/green]" if c["verified"] else "[red]unverified[/red]"
        page = f", page {c['page']}" if c["page"] else ""
        console.print(f"  [{c['n']}] {c['source']}{page} · {c['section'] or c['title']} · {mark}")
        console.print(f"      “{c['quote']}”", highlight=False)
    for sentence in body["removed"]:
        console.print(f"  [yellow]removed (unsupported):[/yellow] {sentence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

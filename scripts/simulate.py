"""A seeded simulator of a product whose users react to model outputs.

Three apps show model answers to users. Each app has a hidden house style that
users like and the off-the-shelf model rarely follows:

- support-reply: greet the customer by name ("Hi Maria,") and sign off
  ("Best regards,\\nThe Acme team");
- sql-helper: SQL keywords in upper case and a closing semicolon;
- summarize: the summary starts with "TL;DR:".

Users accept styled answers, edit plain ones into the house style, reject or
rate them low, and pick the styled one when shown two (choose). 10% of reactions
are noise. Logs are written in the native schema (DESIGN.md) as daily files:

    interactions-YYYY-MM-DD.jsonl   interactions, some with their feedback nested
    feedback-YYYY-MM-DD.jsonl       feedback events; some belong to the next day's
                                    interactions (logs are not ordered across files),
                                    and a few lines are malformed (they end in quarantine)

    python -m scripts simulate --out data/landing --days 3 --per-day 150 --seed 0

The same seed gives byte-identical files. `--start` picks the first day, so a
nightly job can be fed new days without repeating old ones.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Sofia", "Raj", "Chloe", "Mateo",
         "Ingrid", "Yuki", "Daniel", "Priya", "Lucas", "Amara"]
SIGN_OFF = "Best regards,\nThe Acme team"

SUPPORT_ISSUES = [
    ("my refund has not arrived yet", "Your refund was issued on our side and usually reaches your bank within 5 business days."),
    ("I forgot my password", "You can reset your password from the sign-in page with the 'Forgot password' link."),
    ("my order arrived damaged", "We are sorry about the damage. We will send a replacement at no cost to you."),
    ("I was charged twice", "We found the duplicate charge and reversed it. You will see the credit within a few days."),
    ("how do I change my shipping address", "You can change the shipping address under Orders until the parcel ships."),
    ("the app crashes when I log in", "Please update the app to the latest version; the crash on login was fixed there."),
    ("can I cancel my subscription", "Yes, you can cancel any time under Account, then Subscription. No fee applies."),
    ("where is my parcel", "Your parcel is on its way and should arrive within two days. The tracking link is in your email."),
]
SQL_TASKS = [
    ("count the orders per customer", "select customer_id, count(*) as orders from orders group by customer_id"),
    ("list users who signed up this year", "select id, email from users where signup_date >= date '2026-01-01'"),
    ("find the ten most expensive products", "select name, price from products order by price desc limit 10"),
    ("total revenue per month", "select date_trunc('month', paid_at) as month, sum(amount) from payments group by month"),
    ("customers without orders", "select c.id from customers c left join orders o on o.customer_id = c.id where o.id is null"),
    ("average rating per product", "select product_id, avg(stars) from reviews group by product_id"),
]
SQL_KEYWORDS = ["select", "from", "where", "group by", "order by", "limit", "left join", "on", "as",
                "count", "sum", "avg", "desc", "is null", "date_trunc", "date"]
ARTICLES = [
    ("The city council approved a new bike lane network. Construction starts in spring and will connect the university to the station.",
     "The council approved bike lanes linking the university and the station, built from spring."),
    ("A local bakery won the national bread award for its sourdough. The owner credits a forty-year-old starter.",
     "A local bakery's sourdough won the national bread award."),
    ("Heavy rain closed two roads near the river overnight. Both reopened by noon after crews cleared debris.",
     "Two riverside roads closed by overnight rain reopened by noon."),
    ("The library will open on Sundays from next month after a rise in visitors. Staff hours were increased to cover it.",
     "The library opens on Sundays from next month due to more visitors."),
    ("A software company moved its office to the old harbour building and plans to hire fifty people this year.",
     "A software firm moved to the old harbour building and will hire fifty people."),
]


# ----------------------------------------------------------------------------- apps


def support(rng: random.Random) -> tuple[list[dict], str, str]:
    """(prompt messages, plain answer, house-style answer)."""
    name = rng.choice(NAMES)
    issue, answer = rng.choice(SUPPORT_ISSUES)
    order = rng.randrange(10000, 99999)
    prompt = [{"role": "system", "content": "You draft replies for Acme customer support."},
              {"role": "user", "content": f"Customer {name} (order {order}) writes: {issue}. Draft a reply."}]
    return prompt, answer, f"Hi {name},\n{answer}\n{SIGN_OFF}"


def sql(rng: random.Random) -> tuple[list[dict], str, str]:
    task, query = rng.choice(SQL_TASKS)
    table = rng.choice(["", " in the shop schema", " for the EU region", " from the replica", " for last quarter"])
    prompt = [{"role": "user", "content": f"Write a SQL query to {task}{table}."}]
    styled = query
    for kw in sorted(SQL_KEYWORDS, key=len, reverse=True):
        styled = _replace_word(styled, kw, kw.upper())
    return prompt, query, styled + ";"


def summarize(rng: random.Random) -> tuple[list[dict], str, str]:
    article, summary = rng.choice(ARTICLES)
    source = rng.choice(["the Herald", "City News", "the Gazette", "Radio North", "the Courier"])
    day = rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
    prompt = [{"role": "user", "content": f"Summarize in one sentence this report from {source} on {day}: {article}"}]
    return prompt, summary, f"TL;DR: {summary}"


def _replace_word(text: str, word: str, new: str) -> str:
    import re

    return re.sub(rf"\b{re.escape(word)}\b", new, text)


APPS = {"support-reply": support, "sql-helper": sql, "summarize": summarize}
TASKS = {"support-reply": "reply", "sql-helper": "text-to-sql", "summarize": "summary"}
HOUSE_STYLE = {  # regexes a `rules` judge can use: the hidden preference, made checkable
    "support-reply": r"^Hi [A-Z][a-z]+,[\s\S]*The Acme team\s*$",
    "sql-helper": r"^SELECT [\s\S]*;\s*$",
    "summarize": r"^TL;DR: ",
}


# ----------------------------------------------------------------------------- users


def react(rng: random.Random, styled: bool, plain: str, gold: str, noise: float) -> dict:
    """One user's feedback on an answer: the hidden preference plus noise."""
    if rng.random() < noise:
        kind = rng.choice(["accept", "reject", "rate"])
        return {"kind": kind, **({"score": rng.randint(1, 5)} if kind == "rate" else {})}
    r = rng.random()
    if styled:
        if r < 0.75:
            return {"kind": "accept"}
        return {"kind": "rate", "score": rng.choice([4, 5])}
    if r < 0.5:
        return {"kind": "edit", "edited_text": gold}
    if r < 0.8:
        return {"kind": "reject"}
    return {"kind": "rate", "score": rng.choice([1, 2])}


def _iso(ts: datetime, rng: random.Random) -> str | int:
    """Mix timestamp encodings as real logs do: ISO with offset, epoch s, epoch ms."""
    r = rng.random()
    if r < 0.7:
        return ts.astimezone(UTC).isoformat()
    if r < 0.85:
        return int(ts.timestamp())
    return int(ts.timestamp() * 1000)


def simulate_day(day: date, *, per_day: int, seed: int, styled_rate: float = 0.25,
                 choose_rate: float = 0.15, noise: float = 0.1, n_users: int = 40, flip: bool = False):
    """Interactions (some with nested feedback) and loose feedback events for one day.

    `flip` turns the preference around (users want the plain answers): label-flipped
    signal, to check that the gate rejects a model trained on it.
    """
    rng = random.Random(f"{seed}-{day.isoformat()}")
    start = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    interactions, loose = [], []
    for i in range(per_day):
        app = rng.choice(list(APPS))
        prompt, plain, gold = APPS[app](rng)
        if flip:
            plain, gold = gold, plain
        user = f"u{rng.randrange(n_users):03d}"
        ts = start + timedelta(seconds=int(i * 36000 / per_day) + rng.randrange(30))
        styled = rng.random() < styled_rate
        iid = f"{day.isoformat()}-{i:05d}"
        rec = {"interaction_id": iid, "ts": ts.isoformat(), "user_id": user,
               "session_id": f"{user}-{day.isoformat()}", "app": app, "task": TASKS[app],
               "model_id": "acme-assistant-v1", "prompt": prompt,
               "completion": gold if styled else plain, "metadata": {"simulated": True}}
        fb_ts = ts + timedelta(seconds=20 + rng.randrange(600))
        if rng.random() < choose_rate:
            # Two candidates shown side by side; the user picks one.
            other = dict(rec, interaction_id=iid + "-b", completion=plain if styled else gold)
            interactions.append(other)
            picks_styled = rng.random() > noise + 0.05
            chosen, not_chosen = (iid, iid + "-b") if picks_styled == styled else (iid + "-b", iid)
            event = {"event_id": f"e-{iid}-c", "interaction_id": chosen, "ts": fb_ts.isoformat(),
                     "kind": "choose", "other_interaction_id": not_chosen}
        else:
            event = {"event_id": f"e-{iid}-0", "interaction_id": iid, "ts": _iso(fb_ts, rng),
                     **react(rng, styled, plain, gold, noise)}
        if event["kind"] != "choose" and rng.random() < 0.5:
            rec["feedback"] = [{k: v for k, v in event.items() if k != "interaction_id"}]
        else:
            loose.append(event)
        interactions.append(rec)
    return interactions, loose


def simulate(out_dir: str | Path, *, days: int = 3, per_day: int = 150, seed: int = 0,
             start: date = date(2026, 11, 1), malformed: int = 3, **kwargs) -> list[Path]:
    """Write `days` days of logs into `out_dir`; return the files written, in order.

    Feedback for the first interactions of day d+1 is written into day d's
    feedback file, so it reaches the store before its interaction (pending).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = []
    carry: list[dict] = []
    days_data = [simulate_day(start + timedelta(d), per_day=per_day, seed=seed, **kwargs)
                 for d in range(days)]
    for d, (interactions, loose) in enumerate(days_data):
        day = start + timedelta(d)
        early = []
        if d + 1 < days:   # a few events for tomorrow's interactions, logged today
            nxt = days_data[d + 1][1]
            early, days_data[d + 1] = nxt[:5], (days_data[d + 1][0], nxt[5:])
        events = carry + loose + early
        carry = []
        lines = [json.dumps(e, sort_keys=True) for e in events]
        for k in range(malformed):  # broken logs: truncated JSON, unknown kind, edit without text
            bad = [f'{{"event_id": "bad-{day}-{k}", "interaction_id": ',
                   json.dumps({"event_id": f"bad-{day}-{k}", "interaction_id": interactions[0]["interaction_id"],
                               "ts": interactions[0]["ts"], "kind": "like"}),
                   json.dumps({"event_id": f"bad-{day}-{k}", "interaction_id": interactions[0]["interaction_id"],
                               "ts": interactions[0]["ts"], "kind": "edit"})][k % 3]
            lines.insert(rng.randrange(len(lines) + 1), bad)
        ipath = out / f"interactions-{day.isoformat()}.jsonl"
        fpath = out / f"feedback-{day.isoformat()}.jsonl"
        ipath.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in interactions))
        fpath.write_text("".join(line + "\n" for line in lines))
        written += [fpath, ipath]   # feedback first: early events must wait for their interactions
    return written


# ----------------------------------------------------------------------------- live users (make demo)


def follows_style(app: str, text: str) -> bool:
    """Whether an answer follows the app's hidden house style (what a live user rewards)."""
    import re

    return re.search(HOUSE_STYLE[app], text.strip()) is not None


def restyle(app: str, text: str, name: str | None) -> str:
    """What a user makes of an answer that misses the house style: their edit of that very text."""
    import re

    text = text.strip()
    if app == "support-reply":
        body = re.sub(r"^(hi|hello|dear)\b[^\n,]*,?\s*", "", text, flags=re.I).strip()
        return f"Hi {name or 'there'},\n{body}\n{SIGN_OFF}"
    if app == "sql-helper":
        body = text.strip("`").removeprefix("sql").strip().rstrip(";").strip()
        for kw in sorted(SQL_KEYWORDS, key=len, reverse=True):
            body = _replace_word(body, kw, kw.upper())
        body = body if body.startswith("SELECT ") else "SELECT " + body.removeprefix("SELECT").strip()
        return body + ";"
    return "TL;DR: " + text.removeprefix("TL;DR:").strip()


def live_request(rng: random.Random) -> tuple[str, list[dict], str | None]:
    """(app, prompt messages, the customer's name for support replies) of one live request."""
    app = rng.choice(list(APPS))
    prompt, _, gold = APPS[app](rng)
    name = gold.split(",", 1)[0].removeprefix("Hi ") if app == "support-reply" else None
    return app, prompt, name


def react_live(rng: random.Random, app: str, answer: str, name: str | None, noise: float = 0.1) -> dict:
    """A user's reaction to the model's real answer, by the hidden house style, with noise:
    a styled answer is accepted or rated 4-5; any other is edited into the style, rejected or
    rated 1-2 (the same odds as the logged history, `react`)."""
    return react(rng, follows_style(app, answer), answer, restyle(app, answer, name), noise)

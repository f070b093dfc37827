#!/usr/bin/env python3
"""Write the synthetic corpora of the gpt-finetune example (Python 3.11, stdlib only).

No public or private text corpus ships with the machine this example runs on, so this script
writes one public corpus and three companies' confidential corpora, deterministically from
--seed:

  OUT/public.txt                       public text of the same broad domains, one document
                                       per line (the non-private pre-training corpus): bank
                                       FAQs and fee schedules, health leaflets, lab ranges and
                                       clinic information, model clauses and legal guides, and
                                       generic office English
  OUT/acme-bank/train.jsonl            support tickets, card disputes, account notes
  OUT/acme-bank/heldout.jsonl
  OUT/northwind-health/train.jsonl     appointment notes, prescriptions, lab results
  OUT/northwind-health/heldout.jsonl
  OUT/globex-legal/train.jsonl         contract clauses, case memos, correspondence
  OUT/globex-legal/heldout.jsonl
  OUT/prompts.txt                      one prompt per line, in the company order above

Each JSONL line is {"text": "..."}: one record is one document, the privacy unit of DP
training. Records are 1-3 sentences of 15-60 words, drawn from templates with many slots and
synonyms (fictional names, ids, amounts, dates; some accented names, EUR/GBP symbols, units).
Train records are unique; held-out records are drawn from the same generator with another
random stream, and any record that also appears in train (or twice in held-out) is skipped.

Every name, number and organisation is invented; any resemblance is coincidental.

  ./make_corpora.py --out corpora                 # defaults: seed 0, 6000 / 1500 / 200
  ./make_corpora.py --out corpora --check         # also verify what was written
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import random
import re
import sys
import time

COMPANIES = ("acme-bank", "northwind-health", "globex-legal")
MIN_WORDS, MAX_WORDS = 15, 60

# --------------------------------------------------------------------------------------------
# Template expansion
#
#   [a|b|c]   one alternative, chosen uniformly (nesting allowed; [a|] means "a or nothing")
#   {slot}    a value from the slot table, drawn once per document: {amount} twice in one
#             document is the same amount; {amount2} is a second, independent amount.
# --------------------------------------------------------------------------------------------

_ALT = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{([a-z_]+?)(\d*)\}")
_SPACES = re.compile(r"\s+")
_SPACE_PUNCT = re.compile(r"\s+([,.;:)])")


def expand(template: str, rng: random.Random, slots: dict, ctx: dict) -> str:
    text = template
    while True:
        new = _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), text)
        if new == text:
            break
        text = new

    def fill(m: re.Match) -> str:
        key = m.group(0)
        if key not in ctx:
            gen = slots[m.group(1)]
            ctx[key] = gen(rng, ctx) if callable(gen) else rng.choice(gen)
        return ctx[key]

    # Slot values may themselves contain slots (e.g. a phrase naming {agent}).
    for _ in range(4):
        new = _SLOT.sub(fill, text)
        if new == text:
            break
        text = new
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_PUNCT.sub(r"\1", text)
    return text[0].upper() + text[1:] if text else text


def sentences(rng, slots, first: list[str], more: list[str], extra=(0, 2)) -> str:
    """One opening sentence and 0-2 follow-ups (distinct templates), sharing one slot context."""
    ctx: dict = {}
    parts = [expand(rng.choice(first), rng, slots, ctx)]
    k = rng.randint(*extra)
    for i in sorted(rng.sample(range(len(more)), min(k, len(more)))):
        t = more[i]
        parts.append(expand(t, rng, slots, ctx))
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Shared value generators
# --------------------------------------------------------------------------------------------

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _ymd(rng, ctx=None):
    """A date; within one document, the first date drawn is the earliest and each later one
    ({date2}, {date3}) falls 2-90 days after it, so events happen in order."""
    if ctx is not None and "_day" in ctx:
        d = ctx["_day"] + datetime.timedelta(days=rng.randint(2, 90))
    else:
        d = datetime.date(rng.randint(2022, 2025), rng.randint(1, 12), rng.randint(1, 28))
        if ctx is not None:
            ctx["_day"] = d
    return d.year, d.month, d.day


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def money(symbol: str, lo: float, hi: float, log=True):
    def gen(rng, _ctx):
        x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
        return f"{symbol}{x:,.2f}"
    return gen


def digits(n: int, prefix: str = ""):
    return lambda rng, _ctx: prefix + "".join(rng.choice("0123456789") for _ in range(n))


def person(firsts, lasts):
    return lambda rng, _ctx: f"{rng.choice(firsts)} {rng.choice(lasts)}"


# First and last names, some with accents or other non-ASCII letters.
FIRST = ["Amelia", "Oliver", "Priya", "Mateo", "Chloé", "Jonas", "Aisha", "Liam", "Zoë",
         "Søren", "Renée", "Łukasz", "Siobhán", "José", "Mei", "Tomás", "Ingrid", "Kwame",
         "Fatima", "Hannah", "Björn", "Élodie", "Rafael", "Yuki", "Noah", "Aoife", "Dmitri",
         "Grace", "Inès", "Karim", "Lena", "Marco", "Nadia", "Oskar", "Paula", "Ravi", "Sofía",
         "Tariq", "Ursula", "Víctor", "Wen", "Ximena", "Yusuf", "Zara", "Agnieszka", "Benoît",
         "Catalina", "Declan", "Emre", "Freya"]
LAST = ["Ferreira", "Okafor", "Müller", "Núñez", "Kowalczyk", "Haddad", "O'Sullivan",
        "Lindqvist", "Dvořák", "Çelik", "Brennan", "Nakamura", "Osei", "Petrov", "Moreau",
        "García", "Jensen", "Rossi", "Patel", "Walsh", "Schäfer", "Ólafsdóttir", "Nguyen",
        "Kapoor", "Mendes", "Novak", "Barać", "Hughes", "Ibrahim", "Johansson", "Kelly",
        "Lefèvre", "Mahmoud", "Nowak", "Obi", "Pereira", "Quinn", "Reyes", "Sato", "Teixeira",
        "Uddin", "Vasquez", "Whitaker", "Yilmaz", "Zieliński", "Abernethy", "Baptiste",
        "Castellano", "Duchêne", "Eriksen"]

# --------------------------------------------------------------------------------------------
# Public corpus, part 1: generic office English (announcements, meeting notes, how-to,
# reminders); its slot table is extended below with part 2's
# --------------------------------------------------------------------------------------------

PUB_SLOTS = {
    "team": ["Marketing", "Finance", "Facilities", "IT Support", "People Operations",
             "Customer Success", "Procurement", "Operations", "Sales", "Engineering",
             "Communications", "Legal and Compliance", "the front desk", "Payroll"],
    "person": person(FIRST, LAST),
    "first": FIRST,
    "weekday": WEEKDAYS,
    "time": lambda rng, _c: f"{rng.choice([8, 9, 10, 11, 13, 14, 15, 16])}:"
                            f"{rng.choice(['00', '15', '30', '45'])}",
    "date": lambda rng, _c: f"{rng.randint(1, 28)} {rng.choice(MONTHS)}",
    "month": MONTHS,
    "room": ["the large meeting room", "Room 2.14", "the training room", "the third-floor kitchen",
             "the boardroom", "Meeting Room B", "the main reception", "the ground-floor lounge"],
    "tool": ["the shared drive", "the intranet", "the expense tool", "the ticketing portal",
             "the booking system", "the team calendar", "the HR portal", "the wiki",
             "the document management system", "the timesheet app"],
    "topic": ["the quarterly review", "the office move", "the new expense policy",
              "the customer survey results", "next year's budget", "the onboarding checklist",
              "the holiday rota", "the website refresh", "the supplier review",
              "the training plan", "the security awareness week", "the annual report"],
    "item": ["expense claims", "timesheets", "holiday requests", "purchase orders",
             "invoices", "training records", "performance reviews", "travel bookings",
             "access requests", "feedback forms"],
    "n": lambda rng, _c: str(rng.randint(2, 40)),
    "pct": lambda rng, _c: f"{rng.randint(2, 35)}%",
    "amount": lambda rng, _c: rng.choice(["£", "€", "$"]) + f"{rng.randint(5, 500) * 10:,}",
    "thing": ["laptop", "password", "printer queue", "VPN connection", "calendar invite",
              "shared folder", "desk booking", "parking permit", "badge", "mailbox"],
}

PUB_DOCS = [
    # announcements
    (["[Please note that|Just a reminder that|We are pleased to announce that|Heads up:] "
      "{topic} [will take place|is scheduled|has been moved] [on {weekday} {date}|next "
      "{weekday}] at {time} in {room}.",
      "{team} [will host|is organising|is running] a [short|brief|drop-in] session on {topic} "
      "[on {weekday}|this {weekday}|on {date}] at {time}.",
      "From {date}, {item} should be submitted through {tool} [rather than by email|instead "
      "of the old form|only]."],
     ["[Everyone is welcome|All staff are welcome|Please come along if you can], and "
      "[coffee|lunch|refreshments] will be provided.",
      "If you cannot attend, the slides will be [shared|posted|available] on {tool} "
      "[afterwards|by the end of the week].",
      "Questions can be sent to {person} in {team}.",
      "[Thank you|Thanks] to everyone who [helped|contributed|took part] last {month}.",
      "The change [affects|applies to] about {n} people [across the office|in {team}]."]),
    # meeting notes
    (["[Meeting notes|Notes from today's meeting|Summary of the {weekday} stand-up]: "
      "[we discussed|the team reviewed|attendees went through] {topic} and agreed "
      "[next steps|a timeline|the main priorities].",
      "[Action|Follow-up|To do]: {person} to [update|circulate|finalise] the [draft|plan|"
      "summary] for {topic} by {weekday}.",
      "[Attendees|Present]: {first}, {first2}, {first3} and {person}; [apologies from|"
      "absent:] {first4}."],
     ["[The next meeting is|We will meet again|The follow-up is booked] on {weekday} {date} at {time}.",
      "[Budget|Spending] is currently {pct} [below|above|in line with] the plan for the "
      "[quarter|year].",
      "{team} [raised|flagged|mentioned] a [concern|question|risk] about the [timeline|"
      "number of open {item}|workload].",
      "[Decision|Agreed]: {item} older than {n} days will be [archived|closed|reviewed].",
      "[Open question|Still to confirm]: [who owns|the deadline for|the cost of] {topic}."]),
    # how-to snippets
    (["[How to|To] [reset|update|renew|request] your {thing}: [open|go to|log in to] {tool}, "
      "[select|choose|click] [Settings|My Account|New Request] and follow the [steps|"
      "instructions|prompts].",
      "If your {thing} [stops working|is not working|shows an error], [restart your laptop|"
      "sign out and back in|clear the cache] before [raising a ticket|contacting IT Support].",
      "[To submit|When submitting] {item}, attach [a receipt|the approval email|a short "
      "description] and [choose|select] the correct [cost centre|project code|category]."],
     ["[Most|Nearly all] requests are [handled|resolved|approved] within {n} working days.",
      "[A step-by-step guide|The full checklist|A short video] is available on {tool}.",
      "[For anything urgent|Out of hours|If it is urgent], call the [help desk|service desk] "
      "[directly|on extension 4{n}]."]),
    # reminders and policies
    (["[Reminder|A quick reminder|Friendly reminder]: {item} for {month} are due by "
      "{weekday} {date}.",
      "[Our|The] [updated|revised|new] policy on {item} [is now|has been] published on "
      "{tool}.",
      "The [office|building|car park] will be [closed|partially closed|open with reduced "
      "hours] on {date} [for maintenance|for the public holiday|while works are completed]."],
     ["Claims over {amount} [need|require] [approval from a manager|a second signature|"
      "a purchase order].",
      "[Please|Kindly] [check|review] [your details|the attached summary|the guidance] "
      "[before|ahead of] the deadline.",
      "Late submissions [may be|will be] [processed|paid|reviewed] [in the following|next] "
      "month.",
      "[Contact|Speak to|Email] {person} if you have [any questions|concerns|problems]."]),
    # newsletter / updates
    (["[This month|This quarter|Over the past few weeks], {team} [completed|delivered|"
      "finished] {topic} [ahead of schedule|on time|with help from {n} colleagues].",
      "[Welcome|A warm welcome] to {person}, who [joins|has joined] {team} [this week|on "
      "{weekday}|from {date}].",
      "[Customer satisfaction|Response time|Survey participation] [rose|improved|fell] "
      "by {pct} [compared with|since] last {month}."],
     ["[Well done|Congratulations|Thanks] to [everyone involved|the whole team|{first} and "
      "{first2}].",
      "[More details|The full update|A longer write-up] will follow in [next month's|the next]"
      " newsletter.",
      "[We are|The team is] still [looking for|recruiting|hoping to find] volunteers for "
      "{topic}."]),
]

# Generic documents near the private corpora's register (customer service, scheduling,
# suppliers and agreements), written without any company's names, ids or formats.
PUB_DOCS += [
    (["Thank you for contacting [us|our support team|customer services] about your "
      "[account|payment|order|invoice]; [your request|the case] has been [logged|passed to "
      "the right team|reviewed] and [we will reply|you will hear from us] within {n} working "
      "days.",
      "[Customer enquiry|Support request|Service request] from {person}: [a payment of "
      "{amount} appears twice|the invoice amount is different from the quote|a refund has "
      "not arrived|they cannot sign in to their account].",
      "If a [payment|charge|direct debit] looks wrong, [check|compare] it against your "
      "[receipt|statement|invoice] and [contact|tell] {team} [as soon as possible|within "
      "{n} days]."],
     ["[Refunds|Credits|Corrections] [usually take|can take] up to {n} working days to "
      "appear.",
      "[The case|The request] was [closed|resolved|escalated] [by|with help from] {first} "
      "on {date}.",
      "[Please do not share|Never share] your password or [passcode|security details] with "
      "anyone, including staff."]),
    (["[Your appointment|The appointment|Your visit] with {person} is [confirmed|booked] "
      "for {weekday} {date} at {time}.",
      "[To cancel or change|If you need to rearrange] an appointment, [please give|we ask "
      "for] at least {n} hours' notice [by phone|through the booking system|by email].",
      "[Reminder|Please note]: the [health and wellbeing|first aid|flu vaccination] "
      "[session|clinic|check] for staff is on {weekday} {date} in {room}."],
     ["[Please arrive|Arrive] [ten|fifteen|five] minutes early and bring [any letters|"
      "a list of your medicines|your reference number].",
      "[Results|Follow-up notes|Next steps] will be [sent|shared] [by email|by letter|"
      "through the portal] [within|after] {n} days.",
      "[Trained first aiders|Staff with first aid training] are listed on {tool}."]),
    (["The [supplier|service|maintenance|licence] agreement with our [cleaning|catering|"
      "software|printing] provider [has been renewed|ends|was signed] [on {date}|for "
      "another {n} months].",
      "[Before signing|Before agreeing to] any [contract|agreement|terms], [send|forward] "
      "the draft to {team} for [review|approval] at least {n} days in advance.",
      "[Notice of termination|Any notice under the agreement|A change to the terms] must be "
      "[given in writing|sent by email and by post|approved by {team}]."],
     ["[Invoices|Payments] under the agreement are [due|payable] within {n} days.",
      "[Confidential information|Customer data|Personal data] must [only be shared|be "
      "stored] [as the policy allows|on approved systems|with the people who need it].",
      "[Signed copies|The final version|A summary of the terms] will be [kept|filed|saved]"
      " on {tool}."]),
]

# Public corpus, part 2: public web text of the same broad domains as the companies' records,
# as a model owner would collect it: bank FAQ answers, fee schedules and how-to-read-your-
# statement pages; health leaflets, lab reference ranges and clinic information; model
# contract clauses, statute-like sections and plain-English legal guides. Numbers, codes,
# dates, currency symbols and units (µ, °, ×, ⁹, ²) occur throughout, as on such pages, so
# a model pre-trained on it has seen these characters and formats. Names, organisations and
# example identifiers are this corpus's own (generic formats such as REF-2023-104552 or
# ID 0047-118, with other prefixes than any company's); it holds no company record.

PUB_FIRST = ["Adèle", "Alexei", "Ana", "Anders", "Ángel", "Anneke", "Arjun", "Beatriz",
             "Bjørn", "Callum", "Carmen", "Chiara", "Ciarán", "Daniel", "Deniz", "Eleni",
             "Émile", "Erin", "Esther", "Éva", "Felix", "Gaëlle", "Göran", "Hamza", "Hélène",
             "Idris", "Íñigo", "Isla", "Jakub", "Jiří", "Joanna", "Jürgen", "Júlia", "Kai",
             "Katarzyna", "Laila", "Laura", "Leon", "Lucía", "Maëlle", "Magnus", "Malik",
             "Maria", "Mathilde", "Michał", "Miriam", "Nikolai", "Niamh", "Omar", "Óscar",
             "Patrick", "Pilar", "Rhys", "Rosa", "Ruth", "Sándor", "Sara", "Seo-yeon",
             "Simone", "Stefan", "Thérèse", "Thomas", "Úrsula", "Valentina", "Wojciech",
             "Yasmin", "Zeynep"]
PUB_LAST = ["Adeyemi", "Álvarez", "Andersson", "Bauer", "Bianchi", "Brady", "Çakır",
            "Campbell", "Chen", "Costa", "Ćosić", "Dąbrowski", "Díaz", "Dubois", "Evans",
            "Fernández", "Fischer", "Fontaine", "Gallagher", "Grönberg", "Hansen", "Høeg",
            "Horváth", "Jäger", "Kaur", "Kovačević", "Krüger", "Larsen", "Lê", "Lehmann",
            "Łozińska", "MacLeod", "Mäkinen", "Mańkowski", "Marchetti", "Martín", "Meyer",
            "Mitchell", "Moretti", "Muñoz", "Nilsson", "Nowiński", "Ó Briain", "Owusu",
            "Özdemir", "Peña", "Popescu", "Price", "Rahman", "Řezáč", "Ribeiro", "Roussel",
            "Santos", "Schmidt", "Shah", "Silva", "Sørensen", "Stewart", "Thompson", "Varga",
            "Vogel", "Wagner", "Watanabe", "Weiß", "Williams", "Wright", "Young"]
PUB_ORG = ["Harbourview Trading", "Alder & Finch", "Meridian Freight", "Cobalt Software",
           "Riverside Bakeries", "Pennine Builders", "Larkspur Media", "Oakridge Dairies",
           "Fjordline Marine", "Sunfield Solar", "Greystone Properties", "Kingfisher Tools",
           "Albion Textiles", "Westmoor Estates", "Beacon Care Homes", "Citrine Labs",
           "Nordström Möbel", "Peñalver Vinos", "Dubois Frères", "Brühl Maschinenbau",
           "Château Lérac", "Copperleaf Foods", "Ironbridge Engineering", "Saltmarsh Energy",
           "Blue Heron Leisure", "Ashdown Logistics", "Marlow & Keane", "Tern Data Systems",
           "Ørestad Consulting", "Vieira Construções", "Holloway Print", "Juniper Retail"]
PUB_SUFFIX = ["Ltd", "Limited", "plc", "LLP", "GmbH", "S.A.", "AS", "B.V.", "SARL", "Inc.",
              "AG", "S.p.A.", "Oy", "& Co."]
PUB_CITY = ["Leicester", "Derby", "York", "Aberdeen", "Swansea", "Exeter", "Galway", "Cork",
            "Lyon", "Nîmes", "Málaga", "Zürich", "Kraków", "Łódź", "Göteborg", "Brno",
            "Rotterdam", "Porto", "Île-de-France", "München", "Düsseldorf", "Genève",
            "Reykjavík", "Plzeň", "Córdoba"]
PUB_STREET = ["High Street", "Station Road", "Mill Lane", "Church Street", "Park Avenue",
              "Victoria Road", "King's Parade", "Market Place", "Rue de la République",
              "Calle Mayor", "Hauptstraße", "Quay Street", "Albert Embankment"]


def _pdate(fmt: str):
    """Dates in the formats public pages use; ordered within a document like _ymd's."""
    def gen(rng, ctx):
        y, m, d = _ymd(rng, ctx)
        mon = MONTHS[m - 1]
        return {"dmy": f"{d:02d}/{m:02d}/{y}", "long": f"{d} {mon} {y}",
                "mon": f"{d:02d}-{mon[:3]}-{y}", "iso": f"{y}-{m:02d}-{d:02d}",
                "us": f"{mon} {d}, {y}", "dot": f"{d:02d}.{m:02d}.{y}",
                "ord": f"the {_ordinal(d)} day of {mon} {y}",
                "short": f"{d} {mon[:3]} {y}"}[fmt]
    return gen


def _pick(*options):
    return lambda rng, _c: rng.choice(options)


def _num(lo: int, hi: int, fmt: str = "{}"):
    return lambda rng, _c: fmt.format(rng.randint(lo, hi))


def _ref(rng, _c):
    p = rng.choice(["REF", "CRN", "QRY", "REQ", "SRV", "TKT", "CMP", "APP", "INV", "ORD"])
    y = rng.randint(2019, 2026)
    k = rng.choice([
        f"{p}-{y}-{rng.randint(0, 999999):06d}", f"{p}{rng.randint(0, 9999999):07d}",
        f"ID {rng.randint(0, 9999):04d}-{rng.randint(0, 999):03d}",
        f"{p}/{y}/{rng.randint(0, 99999):05d}", f"{rng.randint(100, 999)}-{rng.randint(0, 9999):04d}",
        f"{p}-{rng.randint(0, 99999999):08d}", f"#{rng.randint(10000, 999999)}"])
    return k


def _words_num(rng, _c, table=(("one", 1), ("two", 2), ("three", 3), ("five", 5),
                               ("seven", 7), ("ten", 10), ("fourteen", 14), ("twenty", 20),
                               ("twenty-one", 21), ("twenty-eight", 28), ("thirty", 30),
                               ("forty-five", 45), ("sixty", 60), ("ninety", 90))):
    w, n = rng.choice(table)
    return rng.choice([f"{w} ({n})", f"{n}", f"{w}"])


def _amount(symbols, lo, hi, cents=0.6):
    def gen(rng, _c):
        x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        sym = rng.choice(symbols)
        if rng.random() < cents:
            return f"{sym}{x:,.2f}"
        return f"{sym}{round(x):,}"
    return gen


def _iban_gb(rng, _c):
    bank = rng.choice(["EXMP", "BANK", "DEMO", "SAMP", "TEST", "ABCD", "WXYZ"])
    d = "".join(rng.choice("0123456789") for _ in range(14))
    return f"GB{rng.randint(10, 99)} {bank} {d[:4]} {d[4:8]} {d[8:12]} {d[12:]}"


def _iban_eu(rng, _c):
    cc, n = rng.choice([("DE", 18), ("FR", 23), ("ES", 20), ("IE", 18), ("NL", 14),
                        ("IT", 23), ("PT", 21), ("BE", 12)])
    body = f"{rng.randint(10, 99)}" + "".join(rng.choice("0123456789") for _ in range(n))
    s = cc + body
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def _phone(rng, _c):
    # Ofcom's ranges reserved for drama and examples, and a few other generic formats.
    return rng.choice([f"0161 496 0{rng.randint(0, 999):03d}", f"020 7946 0{rng.randint(0, 999):03d}",
                       f"0113 496 0{rng.randint(0, 999):03d}", f"+44 20 7946 0{rng.randint(0, 999):03d}",
                       f"0800 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                       f"0300 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"])


def _fee_list(rng, _c):
    items = [
        lambda: f"replacement card {rng.choice(['free', '£5.00', '£10.00'])}",
        lambda: f"unpaid item £{rng.choice(['0.00', '5.00', '8.00', '10.00'])}",
        lambda: f"CHAPS payment £{rng.choice(['17.00', '20.00', '25.00', '30.00'])}",
        lambda: f"international payment (SWIFT) £{rng.choice(['9.50', '15.00', '20.00', '25.00'])}",
        lambda: f"SEPA payment in euro €{rng.choice(['0.00', '2.00', '5.50'])}",
        lambda: f"copy statement £{rng.choice(['2.50', '5.00', '7.50'])} per page",
        lambda: f"banker's draft £{rng.choice(['10.00', '15.00', '20.00'])}",
        lambda: f"non-sterling transaction fee {rng.choice(['2.75', '2.99', '1.50'])}%",
        lambda: f"cash withdrawal abroad {rng.choice(['2.99', '1.50', '3.00'])}% (min. £{rng.choice(['1.50', '2.00', '3.00'])})",
        lambda: f"monthly account fee £{rng.choice(['0.00', '3.00', '4.50', '6.50', '12.00', '17.00'])}",
        lambda: f"arranged overdraft {rng.choice(['35.0', '39.49', '29.9', '24.9'])}% EAR variable",
        lambda: f"inbound international payment £{rng.choice(['0.00', '2.00', '7.00'])}",
        lambda: f"stopped cheque £{rng.choice(['5.00', '10.00'])}",
        lambda: f"cash deposit over £{rng.choice(['1,000', '5,000', '10,000'])}: {rng.choice(['0.5', '0.7', '1.0'])}%",
        lambda: f"balance certificate £{rng.choice(['15.00', '25.00'])}",
    ]
    k = rng.randint(3, 5)
    return "; ".join(f() for f in rng.sample(items, k))


def _loan_example(rng, _c):
    p = rng.choice([1000, 1500, 2500, 3000, 5000, 7500, 10000, 15000, 20000, 25000])
    n = rng.choice([12, 18, 24, 36, 48, 60, 72, 84])
    apr = rng.choice([4.9, 5.9, 6.4, 6.9, 7.4, 8.9, 9.9, 12.9, 14.9, 19.9, 22.9, 29.9])
    r = (1 + apr / 100) ** (1 / 12) - 1
    m = p * r / (1 - (1 + r) ** -n)
    sym = rng.choice(["£", "£", "€"])
    return (f"{rng.choice(['borrowing', 'a loan of'])} {sym}{p:,} over {n} months at {apr}% "
            f"APR representative ({rng.choice(['fixed', 'variable'])}) gives {n} monthly "
            f"repayments of {sym}{m:,.2f} and a total amount payable of {sym}{m * n:,.2f}")


STMT_DESC = ["CARD PAYMENT TO CORNER STORE", "DD CITY ENERGY", "SO RENT", "FPI SALARY",
             "ATM WITHDRAWAL", "CONTACTLESS COFFEE HOUSE", "TFR TO SAVINGS", "INTEREST PAID",
             "MONTHLY ACCOUNT FEE", "NON-STERLING TRANSACTION FEE", "REFUND ONLINE SHOP",
             "CARD PAYMENT TO SUPERMARKT GMBH", "BGC CHILD BENEFIT", "FPO J SMITH",
             "DD COUNCIL TAX", "CARD PAYMENT TO CAFÉ DE LA GARE", "DD MOBILE PHONE CO",
             "CHQ 000123", "CASH DEPOSIT", "DD GYM MEMBERSHIP"]


def _stmt(rng, ctx):
    bal = rng.uniform(150, 4500)
    out = []
    for _ in range(rng.randint(2, 4)):
        amt = math.exp(rng.uniform(math.log(2.5), math.log(1800)))
        d = "{2:02d}/{1:02d}/{0}".format(*_ymd(rng, ctx))
        sign = rng.choice(["-", "+", "-", "-"])
        bal += amt if sign == "+" else -amt
        out.append(f"{d} {rng.choice(STMT_DESC)} {sign}£{amt:,.2f} (balance £{bal:,.2f})")
    return "; ".join(out)


def _masked(rng, _c):
    d = f"{rng.randint(0, 9999):04d}"
    return rng.choice([f"****{d}", f"**** **** **** {d}", f"XXXX XXXX XXXX {d}",
                       f"a card ending {d}"])


# Medicines for the leaflets: name, class, uses, doses, frequency abbreviations, side effects.
PUB_DRUGS = [
    ("metformin", "biguanides", ["type 2 diabetes"], ["500 mg", "850 mg", "1 g"],
     ["OD", "BD", "TDS"], "feeling sick, diarrhoea and a metallic taste"),
    ("gliclazide", "sulfonylureas", ["type 2 diabetes"], ["40 mg", "80 mg", "30 mg MR"],
     ["OD", "BD"], "low blood sugar (hypos) and weight gain"),
    ("amlodipine", "calcium channel blockers", ["high blood pressure", "angina"],
     ["2.5 mg", "5 mg", "10 mg"], ["OD"], "swollen ankles, flushing and headaches"),
    ("lisinopril", "ACE inhibitors", ["high blood pressure", "heart failure"],
     ["2.5 mg", "5 mg", "10 mg", "20 mg"], ["OD"], "a dry cough and dizziness"),
    ("ramipril", "ACE inhibitors", ["high blood pressure", "kidney disease"],
     ["1.25 mg", "2.5 mg", "5 mg", "10 mg"], ["OD"], "a dry cough and dizziness"),
    ("losartan", "angiotensin receptor blockers", ["high blood pressure"],
     ["25 mg", "50 mg", "100 mg"], ["OD"], "dizziness and tiredness"),
    ("simvastatin", "statins", ["high cholesterol"], ["10 mg", "20 mg", "40 mg"], ["nocte"],
     "muscle aches and headaches"),
    ("atorvastatin", "statins", ["high cholesterol", "prevention of heart disease"],
     ["10 mg", "20 mg", "40 mg", "80 mg"], ["OD", "nocte"], "muscle aches and indigestion"),
    ("amoxicillin", "penicillin antibiotics", ["chest infections", "ear infections"],
     ["250 mg", "500 mg"], ["TDS"], "diarrhoea, feeling sick and rash"),
    ("clarithromycin", "macrolide antibiotics", ["chest infections", "skin infections"],
     ["250 mg", "500 mg"], ["BD"], "a changed sense of taste and diarrhoea"),
    ("doxycycline", "tetracycline antibiotics", ["chest infections", "acne", "Lyme disease"],
     ["100 mg", "200 mg"], ["OD", "BD"], "sensitivity to sunlight and indigestion"),
    ("nitrofurantoin", "antibiotics", ["urine infections (UTI)"], ["50 mg", "100 mg MR"],
     ["QDS", "BD"], "feeling sick and dark yellow urine"),
    ("salbutamol", "short-acting beta-2 agonists", ["asthma", "COPD"],
     ["100 micrograms per puff", "2.5 mg nebules"], ["PRN", "QDS PRN"], "shaking and a fast heartbeat"),
    ("beclometasone", "inhaled corticosteroids", ["asthma"], ["100 micrograms", "200 micrograms"],
     ["BD"], "a hoarse voice and oral thrush"),
    ("levothyroxine", "thyroid hormones", ["an underactive thyroid (hypothyroidism)"],
     ["25 micrograms", "50 micrograms", "100 micrograms", "125 micrograms"], ["OD"],
     "few side effects at the right dose"),
    ("sertraline", "SSRI antidepressants", ["depression", "anxiety"], ["50 mg", "100 mg", "150 mg"],
     ["OD"], "feeling sick, headaches and trouble sleeping"),
    ("citalopram", "SSRI antidepressants", ["depression", "panic disorder"], ["10 mg", "20 mg"],
     ["OD"], "feeling sick and sweating"),
    ("omeprazole", "proton pump inhibitors", ["heartburn", "acid reflux (GORD)", "stomach ulcers"],
     ["10 mg", "20 mg", "40 mg"], ["OD", "BD"], "headaches and stomach pain"),
    ("lansoprazole", "proton pump inhibitors", ["indigestion", "acid reflux (GORD)"],
     ["15 mg", "30 mg"], ["OD"], "headaches and diarrhoea"),
    ("ibuprofen", "NSAIDs", ["pain", "inflammation", "fever"], ["200 mg", "400 mg"],
     ["TDS", "TDS PRN"], "indigestion and stomach irritation"),
    ("naproxen", "NSAIDs", ["joint pain", "period pain"], ["250 mg", "500 mg"], ["BD"],
     "indigestion and headaches"),
    ("paracetamol", "simple analgesics", ["pain", "fever"], ["500 mg", "1 g"], ["QDS PRN"],
     "very few side effects; do not take more than 4 g in 24 hours"),
    ("codeine", "opioid analgesics", ["moderate pain"], ["15 mg", "30 mg"], ["QDS PRN"],
     "constipation and drowsiness"),
    ("bisoprolol", "beta blockers", ["atrial fibrillation", "angina", "heart failure"],
     ["1.25 mg", "2.5 mg", "5 mg", "10 mg"], ["OD"], "cold hands and tiredness"),
    ("apixaban", "anticoagulants", ["atrial fibrillation", "blood clots"], ["2.5 mg", "5 mg"],
     ["BD"], "bruising and bleeding more easily"),
    ("warfarin", "anticoagulants", ["atrial fibrillation", "blood clots"],
     ["1 mg", "3 mg", "5 mg"], ["OD"], "bleeding; regular INR checks are needed"),
    ("furosemide", "loop diuretics", ["swelling (oedema)", "heart failure"], ["20 mg", "40 mg"],
     ["OD mane", "BD"], "passing urine more often and dizziness"),
    ("prednisolone", "corticosteroids", ["asthma attacks", "inflammation"], ["5 mg", "30 mg", "40 mg"],
     ["OD mane"], "indigestion, mood changes and raised blood sugar"),
    ("cetirizine", "antihistamines", ["hay fever", "hives (urticaria)"], ["10 mg"], ["OD"],
     "drowsiness and a dry mouth"),
    ("loratadine", "antihistamines", ["hay fever", "allergies"], ["10 mg"], ["OD"],
     "headaches and tiredness"),
    ("allopurinol", "xanthine oxidase inhibitors", ["gout"], ["100 mg", "300 mg"], ["OD"],
     "rash and feeling sick"),
    ("colecalciferol (vitamin D3)", "vitamins", ["vitamin D deficiency"],
     ["400 units", "800 units", "20,000 units"], ["OD", "once a week"], "few side effects"),
    ("ferrous sulfate", "iron supplements", ["iron-deficiency anaemia"], ["200 mg"],
     ["OD", "BD"], "constipation and dark stools"),
    ("montelukast", "leukotriene receptor antagonists", ["asthma"], ["10 mg"], ["nocte"],
     "headaches and stomach ache"),
    ("tamsulosin", "alpha blockers", ["an enlarged prostate"], ["400 micrograms MR"], ["OD"],
     "dizziness on standing"),
    ("gabapentin", "anticonvulsants", ["nerve pain", "epilepsy"], ["100 mg", "300 mg"], ["TDS"],
     "drowsiness and dizziness"),
]
FREQ = {"OD": "once a day", "BD": "twice a day", "TDS": "three times a day",
        "QDS": "four times a day", "PRN": "when required", "nocte": "at night",
        "mane": "in the morning", "TDS PRN": "up to three times a day when required",
        "QDS PRN": "up to four times a day when required", "OD mane": "once each morning",
        "once a week": "once a week"}
ABBR_MED = [("OD", "once daily"), ("BD", "twice daily"), ("TDS", "three times a day"),
            ("QDS", "four times a day"), ("PRN", "as needed"), ("nocte", "at night"),
            ("mane", "in the morning"), ("MR", "modified release"), ("stat", "immediately"),
            ("c/o", "complains of"), ("Rx", "prescription or treatment"),
            ("Pt", "patient"), ("Hx", "history"), ("Dx", "diagnosis"), ("Obs", "observations"),
            ("BP", "blood pressure"), ("HR", "heart rate"), ("SpO2", "oxygen saturation"),
            ("RR", "respiratory rate"), ("Wt", "weight"), ("NKDA", "no known drug allergies"),
            ("DNA", "did not attend"), ("F/U", "follow-up"), ("re:", "regarding"),
            ("disp.", "dispense"), ("qty", "quantity"), ("appt", "appointment"),
            ("SOB", "shortness of breath"), ("GP", "general practitioner"),
            ("RN", "registered nurse"), ("ANP", "advanced nurse practitioner"),
            ("PO", "by mouth"), ("IM", "into a muscle"), ("IV", "into a vein"),
            ("mcg", "micrograms"), ("U&E", "urea and electrolytes"), ("FBC", "full blood count"),
            ("LFT", "liver function tests"), ("TFT", "thyroid function tests"),
            ("(H)", "above the reference range"), ("(L)", "below the reference range")]
ABBR_BANK = [("AER", "Annual Equivalent Rate"), ("APR", "Annual Percentage Rate"),
             ("EAR", "Effective Annual Rate"), ("p.a.", "per annum"), ("ID&V",
             "identification and verification"), ("OTP", "one-time passcode"),
             ("DD", "Direct Debit"), ("SO", "standing order"), ("FPS", "Faster Payments"),
             ("CHAPS", "same-day high-value payment"), ("BACS", "three-day bank transfer"),
             ("SEPA", "Single Euro Payments Area"), ("SWIFT", "the international payments network"),
             ("BIC", "Bank Identifier Code"), ("IBAN", "International Bank Account Number"),
             ("FX", "foreign exchange"), ("ATM", "cash machine"), ("PIN",
             "personal identification number"), ("KYC", "know your customer"),
             ("ISA", "Individual Savings Account"), ("T&Cs", "terms and conditions"),
             ("cust.", "customer"), ("a/c", "account"), ("acct", "account"),
             ("ref.", "reference"), ("tfr", "transfer"), ("bal.", "balance")]
ABBR_LAW = [("v", "versus"), ("s.", "section"), ("ss.", "sections"), ("cl.", "clause"),
            ("para.", "paragraph"), ("Sch.", "Schedule"), ("reg.", "regulation"),
            ("CPR", "Civil Procedure Rules"), ("KC", "King's Counsel"),
            ("WP", "without prejudice"), ("SSAC", "subject to contract"),
            ("LLP", "limited liability partnership"), ("plc", "public limited company"),
            ("Ltd", "private limited company"), ("GmbH", "German limited company"),
            ("S.A.", "public company in France or Spain"), ("B.V.", "Dutch private company"),
            ("SARL", "French limited company"), ("HHJ", "His or Her Honour Judge"),
            ("ibid.", "in the same place"), ("et al.", "and others"), ("re", "in the matter of"),
            ("TCC", "Technology and Construction Court"), ("ET", "Employment Tribunal"),
            ("LBA", "letter before action"), ("NDA", "non-disclosure agreement")]


def _glossary(table, lo=3, hi=5):
    def gen(rng, _c):
        return "; ".join(f"{a} ({b})" if rng.random() < 0.5 else f"{a} = {b}"
                         for a, b in rng.sample(table, rng.randint(lo, hi)))
    return gen


def _abbr_def(table):
    def gen(rng, ctx):
        used = ctx.setdefault("_abbr", set())
        a, b = rng.choice([t for t in table if t[0] not in used] or table)
        used.add(a)
        return f"'{a}' means {b}"
    return gen


def _drug(rng, ctx):
    if "_drug" not in ctx:
        ctx["_drug"] = rng.choice(PUB_DRUGS)
    return ctx["_drug"]


def _drug_freq(rng, ctx):
    if "_freq" not in ctx:
        ctx["_freq"] = rng.choice(_drug(rng, ctx)[4])
    return ctx["_freq"]


def _rx_example(rng, _c):
    name, _cls, _uses, doses, freqs, _se = rng.choice(PUB_DRUGS)
    dose, f = rng.choice(doses), rng.choice(freqs)
    days = rng.choice(["", "", f" for {rng.choice([3, 5, 7, 14, 28])} days"])
    return f"'{name} {dose} {f}{days}' means {dose} {FREQ[f]}{days}"


def _rx_pub(rng, _c):
    name, _cls, _uses, doses, freqs, _se = rng.choice(PUB_DRUGS)
    return f"{name} {rng.choice(doses)} {rng.choice(freqs)}"


# Lab tests: name, what it measures, unit, reference low/high, decimals, plausible low/high.
PUB_LABS = [
    ("haemoglobin (Hb)", "the oxygen-carrying protein in red blood cells", "g/L", 115, 165, 0, 85, 185),
    ("haemoglobin", "the oxygen-carrying protein in red blood cells", "g/dL", 11.5, 16.5, 1, 8.5, 18.5),
    ("HbA1c", "average blood sugar over two to three months", "mmol/mol", 20, 41, 0, 30, 95),
    ("HbA1c", "average blood sugar over two to three months", "%", 4.0, 5.9, 1, 4.5, 11.0),
    ("creatinine", "how well the kidneys filter waste", "µmol/L", 60, 110, 0, 40, 220),
    ("eGFR", "estimated kidney filtration rate", "mL/min/1.73m²", 90, 120, 0, 15, 120),
    ("urea", "a waste product cleared by the kidneys", "mmol/L", 2.5, 7.8, 1, 1.8, 14.0),
    ("potassium", "a salt that keeps nerves and heart muscle working", "mmol/L", 3.5, 5.3, 1, 2.9, 6.4),
    ("sodium", "the body's main salt", "mmol/L", 133, 146, 0, 124, 152),
    ("TSH", "thyroid-stimulating hormone", "mIU/L", 0.27, 4.2, 2, 0.05, 9.5),
    ("free T4", "the main thyroid hormone", "pmol/L", 12, 22, 1, 7, 31),
    ("total cholesterol", "fat in the blood", "mmol/L", 0.0, 5.0, 1, 2.8, 8.2),
    ("LDL cholesterol", "'bad' cholesterol", "mmol/L", 0.0, 3.0, 1, 1.1, 6.0),
    ("HDL cholesterol", "'good' cholesterol", "mmol/L", 1.0, 2.2, 1, 0.6, 2.6),
    ("triglycerides", "another blood fat", "mmol/L", 0.0, 1.7, 1, 0.4, 5.5),
    ("white cell count (WBC)", "infection-fighting cells", "×10⁹/L", 4.0, 11.0, 1, 2.1, 19.0),
    ("neutrophils", "the commonest white cells", "×10⁹/L", 2.0, 7.5, 1, 0.8, 14.0),
    ("platelets", "cells that help blood clot", "×10⁹/L", 150, 400, 0, 90, 520),
    ("red cell count", "red blood cells", "×10¹²/L", 3.8, 5.8, 2, 3.1, 6.4),
    ("MCV", "the average size of red cells", "fL", 80, 100, 0, 68, 112),
    ("CRP", "inflammation", "mg/L", 0, 5, 0, 0.5, 180),
    ("fasting glucose", "blood sugar after not eating", "mmol/L", 3.9, 5.5, 1, 3.2, 14.5),
    ("random glucose", "blood sugar at any time", "mmol/L", 3.9, 7.8, 1, 3.4, 18.0),
    ("vitamin D (25-OH)", "vitamin D stores", "nmol/L", 50, 175, 0, 10, 140),
    ("vitamin B12", "a vitamin needed for nerves and blood", "ng/L", 197, 771, 0, 110, 900),
    ("folate", "a B vitamin", "µg/L", 3.9, 26.8, 1, 1.8, 24.0),
    ("ferritin", "iron stores", "µg/L", 15, 300, 0, 4, 420),
    ("ALT", "a liver enzyme", "U/L", 0, 40, 0, 8, 190),
    ("ALP", "a liver and bone enzyme", "U/L", 30, 130, 0, 25, 320),
    ("bilirubin", "a yellow pigment processed by the liver", "µmol/L", 0, 21, 0, 3, 60),
    ("INR", "how long blood takes to clot", "", 0.8, 1.2, 1, 0.9, 4.5),
    ("PSA", "a prostate protein", "µg/L", 0, 4.0, 1, 0.2, 9.0),
    ("urine albumin:creatinine ratio (ACR)", "protein leaking into urine", "mg/mmol", 0, 3.0, 1, 0.3, 40.0),
]


def _lab(rng, ctx):
    if "_lab" not in ctx:
        ctx["_lab"] = rng.choice(PUB_LABS)
    return ctx["_lab"]


def _fmt_val(v, unit, dec):
    sep = "" if unit in ("%", "") else " "
    return f"{v:.{dec}f}{sep}{unit}"


def _lab_range(rng, ctx):
    name, _d, unit, lo, hi, dec, _a, _b = _lab(rng, ctx)
    if lo == 0:
        return f"below {_fmt_val(hi, unit, dec)}"
    return f"{lo:.{dec}f}-{_fmt_val(hi, unit, dec)}"


def _lab_value(rng, ctx):
    name, _d, unit, lo, hi, dec, a, b = _lab(rng, ctx)
    v = round(rng.uniform(a, b), dec)
    flag = " (H)" if v > hi else " (L)" if v < lo else ""
    return f"{_fmt_val(v, unit, dec)}{flag}"


def _lab_any(rng, _c):
    name, _d, unit, lo, hi, dec, a, b = rng.choice(PUB_LABS)
    v = round(rng.uniform(a, b), dec)
    flag = rng.choice([" (H)", " H", "*"]) if v > hi else rng.choice([" (L)", " L"]) if v < lo else ""
    short = name.split(" (")[0]
    return f"{short} {_fmt_val(v, unit, dec)}{flag}"


def _lab_ranges(rng, _c):
    out = []
    for name, _d, unit, lo, hi, dec, _a, _b in rng.sample(PUB_LABS, rng.randint(3, 4)):
        rng_txt = f"<{_fmt_val(hi, unit, dec)}" if lo == 0 else f"{lo:.{dec}f}-{_fmt_val(hi, unit, dec)}"
        out.append(f"{name.split(' (')[0]} {rng_txt}")
    return ", ".join(out)


def _bmi_example(rng, _c):
    w = rng.uniform(45, 130)
    h = rng.uniform(1.50, 1.95)
    return (f"a weight of {w:.1f} kg and a height of {h:.2f} m give a BMI of "
            f"{w / (h * h):.1f} kg/m²")


PUB_CONDS = ["type 2 diabetes", "high blood pressure (hypertension)", "asthma", "COPD",
             "an underactive thyroid", "atrial fibrillation", "heart failure", "gout",
             "osteoarthritis", "eczema", "migraine", "depression", "anxiety",
             "chronic kidney disease", "coeliac disease", "iron-deficiency anaemia",
             "acid reflux (GORD)", "psoriasis", "hay fever", "angina", "sinusitis",
             "a urinary tract infection (UTI)", "cellulitis", "pneumonia"]
PUB_SYMPTOMS = ["a cough lasting more than three weeks", "chest pain", "breathlessness",
                "tiredness", "feeling very thirsty", "passing urine more often",
                "headaches", "dizziness", "a rash", "joint pain and stiffness",
                "palpitations", "swollen ankles", "a high temperature", "a sore throat",
                "wheezing", "weight loss", "low mood", "back pain", "blurred vision",
                "burning when passing urine", "indigestion", "a blocked or runny nose"]

# Legal
PUB_DEFS = ["\"Business Day\" means a day other than a Saturday, Sunday or public holiday in England",
            "\"Confidential Information\" means all information of a confidential nature disclosed by one party to the other",
            "\"Effective Date\" means {date_long}",
            "\"Fees\" means the sums set out in Schedule {schedn}",
            "\"Intellectual Property Rights\" means patents, copyright, trade marks, database rights and similar rights anywhere in the world",
            "\"Services\" means the services described in Schedule {schedn}",
            "\"Term\" means the period from the Effective Date until {date_long2}",
            "\"Losses\" means losses, liabilities, damages, costs and expenses, including reasonable legal fees",
            "\"Personal Data\" has the meaning given in the UK GDPR",
            "\"Change of Control\" has the meaning given in section 1124 of the Corporation Taxes Act 2010",
            "\"Goods\" means the goods set out in the Order",
            "\"Premises\" means {premises}",
            "\"Working Hours\" means 9:00 to 17:30 on a Business Day"]
PUB_HOLDINGS = ["a notice sent to the wrong address was not validly served",
                "the limitation clause was reasonable under the Unfair Contract Terms Act 1977",
                "the exclusion of 'indirect loss' did not cover loss of profits",
                "time was not of the essence for completion",
                "the restrictive covenant of 12 months was wider than necessary and unenforceable",
                "the supplier's standard terms were incorporated by a course of dealing",
                "an email exchange was enough to vary the contract",
                "the claim was brought outside the six-year limitation period",
                "the liquidated damages clause was not a penalty",
                "the landlord had unreasonably withheld consent to assign the lease"]
PUB_ISSUES = ["the service of notices", "a limitation of liability clause", "late payment interest",
              "the scope of an indemnity", "a non-compete covenant", "a force majeure clause",
              "the measure of damages", "the incorporation of standard terms",
              "a break clause in a lease", "a retention of title clause", "liquidated damages"]
STATUTE_SENTS = ["A notice under this section must be in writing and may be given by post or by email.",
                 "The period for compliance is {nwords} days beginning with the day after the notice is given.",
                 "A person who fails to comply with subsection (1) is liable on summary conviction to a fine not exceeding {sum_stat}.",
                 "Subsection (2) does not apply where the amount in question is less than {sum_stat}.",
                 "The Secretary of State may by regulations amend the sum in subsection (3).",
                 "In this section, \"working day\" means a day other than a Saturday, Sunday or bank holiday.",
                 "Interest is payable at {pct_small}% a year above the reference rate.",
                 "An application under this section must be made within {nmonths} months of the decision.",
                 "Nothing in this section affects any right to claim damages.",
                 "The court may extend the time limit if it considers it just and equitable to do so.",
                 "This section applies to contracts made on or after {date_long}."]
SECT_HEADS = ["Notices", "Time limits", "Duty to provide information", "Penalties", "Interest on late payment",
              "Interpretation", "Exemptions", "Right to cancel", "Appeals", "Records", "Commencement"]
PUB_ACTS = ["the Model Services Act 2012", "the Sample Tenancies Act 2016", "the Public Records (Access) Act 2009",
            "the Consumer Contracts (Example) Regulations 2021", "the Late Settlement Act 2019",
            "the Example Companies Act 2006"]
PUB_COURTS = ["the High Court", "the Court of Appeal", "the County Court at {city}",
              "the Business and Property Courts", "the Employment Appeal Tribunal",
              "the Supreme Court", "the Circuit Commercial Court", "an arbitral tribunal"]


def _distinct(table, key):
    """A value from table not yet drawn in this document (slots {x}, {x2}, ... differ)."""
    def gen(rng, ctx):
        used = ctx.setdefault(key, set())
        v = rng.choice([t for t in table if t not in used] or table)
        used.add(v)
        return v
    return gen


def _letters(rng, n, alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ"):
    return "".join(rng.choice(alphabet) for _ in range(n))


def _fee_range(rng, _c):
    lo = rng.choice([750, 1200, 1500, 2500, 3000, 4500, 6000, 8000, 12000, 20000])
    hi = lo * rng.choice([1.5, 2, 2.5, 3])
    sym = rng.choice(["£", "£", "€"])
    return f"{sym}{lo:,} to {sym}{round(hi):,}"


PUB_SLOTS.update({
    "person": person(PUB_FIRST, PUB_LAST),
    "first": PUB_FIRST,
    "pname": person(PUB_FIRST, PUB_LAST),
    "pfirst": PUB_FIRST,
    "plast": PUB_LAST,
    "initial": lambda rng, _c: f"{rng.choice(PUB_FIRST)[0]}. {rng.choice(PUB_LAST)}",
    "ptitle": ["Mr", "Ms", "Mrs", "Dr", "Prof.", "Mx"],
    "porg": lambda rng, _c: f"{rng.choice(PUB_ORG)} {rng.choice(PUB_SUFFIX)}",
    "city": PUB_CITY,
    "street": lambda rng, _c: f"{rng.randint(1, 240)} {rng.choice(PUB_STREET)}",
    "premises": lambda rng, _c: f"Unit {rng.randint(1, 40)}, {rng.randint(1, 240)} "
                                f"{rng.choice(PUB_STREET)}, {rng.choice(PUB_CITY)}",
    "phone": _phone,
    "hours": _pick("Monday to Friday 8am to 8pm and Saturday 9am to 5pm", "24/7",
                   "8:00-18:30 on weekdays", "from 08:00 to 20:00, 7 days a week",
                   "Monday to Friday, 8.30am-6pm", "09:00-17:00 Mon-Fri"),
    "ref": _ref,
    "date_dmy": _pdate("dmy"), "date_long": _pdate("long"), "date_mon": _pdate("mon"),
    "date_iso": _pdate("iso"), "date_us": _pdate("us"), "date_dot": _pdate("dot"),
    "date_ord": _pdate("ord"), "date_short": _pdate("short"),
    "year": _num(2015, 2025),
    "ptime": lambda rng, _c: f"{rng.randint(7, 19):02d}:"
                             f"{rng.choice(['00', '05', '15', '20', '30', '40', '45', '50'])}",
    "n_small": _num(2, 6), "n_days": _num(1, 10), "n_hours": _pick("24", "48", "72", "2", "4"),
    "n_weeks": _pick("2", "4", "6", "8", "12", "18"), "n_months": _pick("3", "6", "12", "13", "18", "24"),
    "n_min": _pick("5", "10", "15", "30"), "n_big": _num(60, 900),
    "nwords": _words_num, "nmonths": _pick("three", "six", "twelve", "3", "6", "12"),
    "pct_small": _pick("0.5", "1.5", "2", "2.75", "2.99", "3", "4", "8"),
    "pct_num": _num(2, 40),
    # bank
    "sortcode": lambda rng, _c: "-".join(f"{rng.randint(0, 99):02d}" for _ in range(3)),
    "acctno": digits(8),
    "iban": _iban_gb, "iban_eu": _iban_eu,
    "bic": lambda rng, _c: rng.choice(["EXMP", "DEMO", "SAMP", "BANK"])
                           + rng.choice(["GB2L", "GB22", "DEFF", "FRPP", "IE2D", "NL2A"]),
    "masked": _masked,
    "amt": _amount(["£", "£", "€", "$"], 2.0, 4000.0),
    "bigamt": _amount(["£", "€"], 1000, 250000, cents=0.1),
    "fee": _pick("£5.00", "£2.50", "£10", "€3.50", "£1.50", "£0.50", "£25.00", "$4.99", "£12"),
    "fee_list": _fee_list,
    "aer": lambda rng, _c: f"{rng.choice([0.5, 1.1, 1.75, 2.25, 3.0, 3.5, 3.85, 4.1, 4.5, 5.0, 5.2]):.2f}%",
    "gross": lambda rng, _c: f"{rng.uniform(0.5, 5.1):.2f}%",
    "apr": lambda rng, _c: f"{rng.choice([6.9, 9.9, 12.9, 18.9, 19.9, 22.9, 24.9, 29.9, 34.9, 39.9])}%",
    "loanex": _loan_example,
    "fx": lambda rng, _c: f"{rng.uniform(1.08, 1.22):.4f}",
    "savings": _pick("Easy Saver", "Instant Access Account", "1-Year Fixed Bond", "Notice Saver (95 days)",
                     "Junior ISA", "Online Saver", "Regular Savings Account", "2-Year Fixed Rate ISA"),
    "shop": _pick("Corner Store", "Bäckerei am Markt", "Rail Tickets Online", "Café Olé",
                  "Bookshop & Co", "Hotel Bellevue", "Pharmacy Plus", "Pizzeria Napoli",
                  "SuperSave Market", "Garage Martínez", "Electronics Direct"),
    "reasons": _pick("duplicate processing; goods or services not received; credit not processed; cancelled recurring transaction",
                     "not authorised by the cardholder; amount differs; paid by other means",
                     "fraud (card-not-present); defective goods; cash not dispensed at ATM",
                     "incorrect amount; late presentment; subscription cancelled but still charged"),
    "stmt": _stmt,
    "gloss_bank": _glossary(ABBR_BANK),
    "prio": _pick("P1 (urgent)", "P2 (high)", "P3 (normal)", "P4 (low)"),
    # health
    "drug": lambda rng, c: _drug(rng, c)[0],
    "drugclass": lambda rng, c: _drug(rng, c)[1],
    "druguse": lambda rng, c: rng.choice(_drug(rng, c)[2]),
    "drugdose": lambda rng, c: rng.choice(_drug(rng, c)[3]),
    "freqabbr": _drug_freq,
    "freqlong": lambda rng, c: FREQ[_drug_freq(rng, c)],
    "side": lambda rng, c: _drug(rng, c)[5],
    "rxex": _rx_example, "rxpub": _rx_pub,
    "abmed": _abbr_def(ABBR_MED),
    "gloss_med": _glossary(ABBR_MED),
    "qty": _pick("7", "14", "21", "28", "30", "56", "84", "100"),
    "labname": lambda rng, c: _lab(rng, c)[0],
    "labdesc": lambda rng, c: _lab(rng, c)[1],
    "labrange": _lab_range,
    "labval": _lab_value,
    "labany": _lab_any,
    "labranges": _lab_ranges,
    "sampleid": lambda rng, _c: f"S{rng.randint(19, 25)}-{rng.randint(0, 9999999):07d}",
    "bp": lambda rng, _c: f"{rng.randint(98, 178)}/{rng.randint(58, 108)} mmHg",
    "hr": lambda rng, _c: f"{rng.randint(48, 124)} bpm",
    "temp": lambda rng, _c: f"{rng.uniform(35.8, 39.6):.1f} °C",
    "sat": lambda rng, _c: f"{rng.randint(89, 100)}%",
    "weight": lambda rng, _c: f"{rng.uniform(42, 135):.1f} kg",
    "rr": lambda rng, _c: f"{rng.randint(11, 28)}/min",
    "bmiex": _bmi_example,
    "condpub": PUB_CONDS,
    "symptom": PUB_SYMPTOMS,
    "age": _num(18, 94),
    "sex": ["M", "F"],
    "agesexdef": lambda rng, _c: (lambda a, s: f"'{a}{s}' means a {a}-year-old "
                                  f"{'man' if s == 'M' else 'woman'}")(rng.randint(18, 94), rng.choice("MF")),
    "ptid": lambda rng, _c: rng.choice([f"ID {rng.randint(0, 9999):04d}-{rng.randint(0, 999):03d}",
                                        f"hospital no. {rng.randint(0, 9999999):07d}",
                                        f"MRN {rng.randint(100, 999)}-{rng.randint(0, 9999):04d}",
                                        f"NHS no. {rng.randint(400, 499)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"]),
    "drname": lambda rng, _c: f"Dr {rng.choice(PUB_LAST)}",
    "nursename": lambda rng, _c: f"{rng.choice(['Nurse', 'RN', 'ANP', 'Sister'])} {rng.choice(PUB_FIRST)}",
    "clinicname": lambda rng, _c: rng.choice(["The Elms Medical Practice", "Hillside Health Centre",
                                              "St Anne's Surgery", "Parkway Clinic", "Millbrook Practice",
                                              "the community diabetes service", "the minor injuries unit",
                                              "Quayside Health Centre", "Clínica San Rafael"]),
    "practiceid": lambda rng, _c: f"{rng.choice('ABCDEFGHJKLMNPY')}{rng.randint(10000, 99999)}",
    # legal
    "cl": lambda rng, _c: f"{rng.randint(1, 30)}.{rng.randint(1, 12)}",
    "subcl": _pick("(a)", "(b)", "(c)", "(d)", "(i)", "(ii)", "(iii)", "(1)", "(2)"),
    "schedn": _pick("1", "2", "3", "4", "A", "B"),
    "definition": _distinct(PUB_DEFS, "_defs"),
    "capsum": _amount(["£", "€", "US$", "$"], 10000, 5000000, cents=0.0),
    "sum_any": _amount(["£", "€", "US$"], 500, 2000000, cents=0.2),
    "sum_stat": _pick("level 3 on the standard scale", "£1,000", "£5,000", "£500", "£2,500", "€10,000"),
    "lawpub": ["England and Wales", "Scotland", "Northern Ireland", "Ireland", "the Netherlands",
               "Germany", "France", "Spain", "the State of Delaware", "Hong Kong", "Switzerland"],
    "rolepub": ["the Provider", "the Client", "the Company", "the Buyer", "the Vendor", "the Licensor",
                "the Licensee", "the Landlord", "the Tenant", "the Employer", "the Employee",
                "the Guarantor", "the Lender", "the Borrower", "the Consultant", "the Agent"],
    "coyno": lambda rng, _c: rng.choice([f"{rng.randint(0, 99999999):08d}",
                                         f"SC{rng.randint(0, 999999):06d}", f"NI{rng.randint(0, 999999):06d}",
                                         f"HRB {rng.randint(1000, 99999)}", f"{rng.randint(100, 999)} {rng.randint(100, 999)} {rng.randint(100, 999)}"]),
    "secn": lambda rng, _c: f"{rng.randint(1, 140)}{rng.choice(['', '', '', 'A', 'B'])}",
    "sechead": SECT_HEADS,
    "stat": _distinct(STATUTE_SENTS, "_stat"),
    "act": PUB_ACTS,
    "holding": PUB_HOLDINGS,
    "issuepub": PUB_ISSUES,
    "court": PUB_COURTS,
    "judge": lambda rng, _c: rng.choice(["HHJ", "Mr Justice", "Mrs Justice", "District Judge",
                                         "Lord Justice", "Employment Judge"])
                             + " " + rng.choice(PUB_LAST),
    "claimno": lambda rng, _c: rng.choice([f"CV-{rng.randint(2015, 2025)}-{rng.randint(0, 999999):06d}",
                                           f"{rng.randint(0, 9)}{_letters(rng, 2)}{rng.randint(0, 99999):05d}",
                                           f"{rng.randint(1000000, 9999999)}/{rng.randint(2015, 2025)}",
                                           f"CASE-{rng.randint(0, 99999):05d}"]),
    "lref": lambda rng, _c: f"{rng.choice(['KLM', 'ABC', 'TRS', 'XYZ', 'MNO', 'PQR'])}/"
                            f"{rng.randint(2018, 2025)}/{rng.randint(0, 9999):04d}"
                            + rng.choice(["", "/" + _letters(rng, 2)]),
    "initials": lambda rng, _c: f"{rng.choice(PUB_FIRST)[0]}{rng.choice(PUB_LAST)[0]}".upper(),
    "fee_range": _fee_range,
    "hrs": _pick("0.1", "0.2", "0.3", "0.5", "0.8", "1.0", "1.5", "2.4", "3.6"),
    "rate": _amount(["£"], 140, 650, cents=0.0),
    "business": _pick("software development", "commercial property letting", "food distribution",
                      "freight forwarding", "renewable energy installation", "care home services",
                      "textile manufacturing", "hotel management", "engineering consultancy"),
    "gloss_law": _glossary(ABBR_LAW),
    "ndays": _pick("5", "7", "10", "14", "21", "28", "30", "60", "90"),
})

BANK_PUB_DOCS = [
    # FAQ answers
    (["Q: How long does a [Faster Payment|transfer to another UK bank|payment to a new payee] take? "
      "A: [Usually|In most cases] [within two hours|a few minutes], but [some|new] payments [can "
      "take|may be held for checks for] up to {n_days} working days.",
      "Q: [What is my sort code?|Where do I find my sort code?] A: It is the six-digit number "
      "[printed on your card|shown in the app|at the top of your statement], written in pairs, "
      "for example {sortcode}.",
      "Q: [Why was my card declined?|Why did my card payment fail?] A: [The most common reasons "
      "are|Usually because of] [an incorrect PIN|insufficient funds|a blocked card|a security "
      "check on an unusual payment][, so check the app first|; you can check this in the app|].",
      "Q: How do I [dispute|query|challenge] a card payment? A: [Contact the retailer first|Try "
      "the merchant first]; if that does not work, [tell us|raise a dispute] within {n_months} "
      "months [of the payment date|of the transaction] and we may be able to [get your money "
      "back|raise a chargeback].",
      "Q: [What is an IBAN?|Where do I find my IBAN?] A: [An IBAN|The International Bank "
      "Account Number] [identifies your account for payments from abroad|is used for SEPA and "
      "SWIFT transfers]; a UK one looks like {iban}.",
      "Q: [Is there a fee for|Do you charge for] [using my card abroad|withdrawing cash "
      "abroad|sending money abroad]? A: [A non-sterling transaction fee of|We charge] "
      "{pct_small}% of the amount[, plus {fee} for cash withdrawals|, with a minimum of {fee}|].",
      "Q: Can I [change|increase|reduce] my overdraft limit? A: Yes, [in the app|in online "
      "banking|by calling {phone}], [subject to status|after a credit check]; arranged "
      "overdrafts cost {apr} EAR variable."],
     ["[Payments|Transfers] [over|above] {bigamt} may [need|require] [extra checks|a call to "
      "confirm|approval in the app].",
      "[You can|Customers can] [check|track] the status [in the app|in online banking|by "
      "calling {phone}].",
      "[We will never|Our staff will never] ask [you|customers] for [your full PIN|a "
      "password|a one-time passcode (OTP)] [by phone|by text|by email].",
      "[Quote your reference|Please have your reference ready], [for example|e.g.] {ref}, [when "
      "you call|if you contact us].",
      "[Lines are open|Our phone lines are open] {hours}.",
      "[This answer was last updated|Last reviewed|Page updated] on {date_long}.",
      "[See also|Related questions]: [Cancelling a Direct Debit|Adding a payee|Lost and stolen "
      "cards|Changing your address]."]),
    # fee schedules
    (["[Fee schedule|Tariff|Schedule of charges] [for personal accounts|for business "
      "accounts|for current accounts] from {date_long}: {fee_list}.",
      "[Everyday banking charges|Our standard charges|Account charges] [at a "
      "glance|explained|summary] ([effective {date_dmy}|as at {date_short}]): {fee_list}.",
      "[Business tariff|Charges for business customers], [version {n_small}.{n_days}|"
      "{year} edition]: {fee_list}."],
     ["[All fees are|Charges are] [taken|debited] [monthly|at the end of each charging "
      "period|on the [1st|2nd|5th|last] working day of the month] and [shown on your statement|"
      "listed in the app].",
      "[Arranged overdraft interest is|Overdraft interest is charged at] {apr} EAR "
      "variable[, with a £{n_big} interest-free buffer|].",
      "[There is no charge|It is free] for [standing orders|Direct Debits|Faster "
      "Payments|balance enquiries at UK cash machines].",
      "[Foreign currency amounts|Non-sterling amounts] are converted at the [card scheme|"
      "Visa|Mastercard] exchange rate, e.g. 1 GBP = {fx} EUR on {date_dmy}.",
      "[We will give you|You will get] at least {n_weeks} weeks' notice [of any change|before "
      "fees change].",
      "[Fees|Charges] [shown|listed] include VAT where it applies."]),
    # savings and loans
    (["[Our|The] {savings} [pays|offers] {aer} AER/{gross} gross [variable|fixed] on "
      "balances [from £1|of £{n_big} or more] [up to {bigamt}|].",
      "Representative example: {loanex}.",
      "[Credit card|Card] representative example: {apr} APR (variable), [assumed credit "
      "limit|based on a credit limit of] [£1,200|£1,500|£3,000|£5,000], purchase rate {gross} p.a. (variable).",
      "[Mortgage|Home loan] example: a [2-year|5-year] fixed rate of {gross}, then [our "
      "standard variable rate|a follow-on rate] of {aer}; overall cost for comparison "
      "{apr} APRC."],
     ["Interest is [calculated daily|calculated daily and paid monthly|paid annually on the "
      "account anniversary].",
      "AER stands for Annual Equivalent Rate and [shows what the interest rate would be if "
      "interest was paid and compounded once each year|lets you compare savings rates].",
      "[Gross|The gross rate] is the [contractual rate of interest|rate paid without tax taken "
      "off].",
      "[Withdrawals|Early withdrawals] [are limited to {n_small} a year|need {ndays} days' "
      "notice|lose {ndays} days' interest].",
      "[Rates correct as at|Rates as of] {date_long}[ and may change|].",
      "[Eligibility criteria apply|Subject to status]; [you must be 18 or over|UK residents "
      "only].",
      "[Missed payments|Late payments] [may|can] [affect your credit score|lead to a fee of "
      "{fee}]."]),
    # account numbers, IBANs and cards explained
    (["[A UK sort code|Sort codes] [has|have] six digits, [usually written|written] as three "
      "pairs such as {sortcode}, and [an account number|account numbers] [has|have] eight "
      "digits, for example {acctno}.",
      "[A UK IBAN|An IBAN for a UK account] is 22 characters long: GB, two check digits, a "
      "four-letter bank code, the sort code and the account number, e.g. {iban}.",
      "[For payments to Europe|For SEPA transfers] [you need|quote] the [beneficiary's|"
      "recipient's] IBAN, such as {iban_eu}, and [sometimes|often] the BIC, such as {bic}.",
      "[Card numbers are|Your card number is] never shown in full: [statements and the "
      "app|letters and receipts] show only the last four digits, as in {masked}."],
     ["[These are|All numbers here are] [made-up examples|examples only] and [do not belong "
      "to a real account|are not real accounts].",
      "[Check|Always check] the payee name before [sending|you send] money: Confirmation of "
      "Payee will [tell you|warn you] if it does not match.",
      "[International payments|Transfers abroad] [usually arrive|arrive] in [1-2|2-3|3-5] "
      "working days.",
      "[Our|The] BIC is {bic}; [SWIFT|international] payments [cost|are charged at] {fee}.",
      "[Your statement|Each statement] shows [your sort code and account number|the IBAN and "
      "BIC] [at the top|on page 1]."]),
    # disputes and chargebacks
    (["If you [do not recognise|don't recognise] a [card payment|transaction|Direct Debit] on "
      "your statement, [check the merchant name first|look at the date and amount], as it "
      "[may differ from the shop's name|can be a parent company's name], then [contact "
      "us|raise a dispute in the app].",
      "A chargeback is [a request|the process] [we make to the merchant's bank|through the card "
      "scheme] to [reverse|recover] a card payment, [for example when goods were not "
      "received|e.g. if you were charged twice|when a refund never arrived].",
      "Under the Direct Debit Guarantee, if an error is made in the payment of your Direct "
      "Debit, you are entitled to a full and immediate refund [from your bank|of the amount "
      "paid].",
      "[Reason codes|Dispute reasons] [we use|commonly used] include: {reasons}."],
     ["[We may|We can] [give you a provisional credit|credit the amount temporarily] while we "
      "[investigate|look into it], usually within {n_days} working days.",
      "[The merchant|The retailer's bank] [normally has|has up to] {ndays} days to [respond|"
      "reply with evidence].",
      "If your card was lost or stolen, [freeze it in the app|block it straight away] and "
      "[we'll send|order] a replacement.",
      "[You will be asked|We'll ask you] to confirm [the card is still in your possession|"
      "whether anyone else has access to your card|that you did not share your PIN].",
      "[Example|For example]: a payment of {amt} to {shop} on {date_dmy} [taken twice|not "
      "recognised|for goods never received].",
      "[Keep|Please keep] [receipts|emails|order confirmations] [as evidence|for at least "
      "{n_months} months]."]),
    # security
    (["[Security tip:|Fraud warning:|Stay safe:] [we will never|your bank will never] ask you "
      "to move money to a 'safe account' or to [read out|share] a one-time passcode.",
      "[After three failed|After {n_small} incorrect] [passcode|PIN|password] attempts your "
      "[access|account|app] [is locked|will be locked] [for your security|for 24 hours]; you can "
      "reset it [in the app|by calling {phone}].",
      "ID&V (identification and verification) is [how we confirm who you are|the checks we "
      "make before discussing an account], [using|for example] [security questions, a card "
      "reader or an app notification|a push notification in the app]."],
     ["[Report|Tell us about] [suspicious|unexpected] [texts|emails|calls] [by forwarding them "
      "to 7726|to our fraud team on {phone}].",
      "[Customers who need extra support|Vulnerable customers] can [ask for|get] [longer "
      "appointments|a named contact|large-print letters].",
      "[If you are a victim of fraud|If you've been scammed], [call us|contact us] "
      "[immediately|straight away] on {phone}.",
      "[Security codes|One-time passcodes] [expire after|are valid for] {n_min} minutes.",
      "[Glossary|Key terms]: {gloss_bank}."]),
    # statements
    (["[Sample statement|Example statement|How to read your statement] ([made-up data|"
      "illustrative]): {stmt}.",
      "[Reading your statement|Statement guide]: [each line shows|lines show] the date, a "
      "description and the amount, e.g. {stmt}."],
     ["DD means Direct Debit, SO standing order, FPI Faster Payment in, FPO Faster Payment "
      "out, TFR transfer and BGC bank giro credit.",
      "[Pending|Recent] [transactions|card payments] [are not yet|may not be] included in the "
      "[balance|available balance].",
      "[Closing balance|Balance carried forward]: {amt}.",
      "[Statements|Monthly statements] are [available|kept] in the app for {n_small} years."]),
    # complaints
    (["[How to complain:|Complaints:] [contact us|tell us] [by phone, in a branch, by secure "
      "message or by post|in any way you like], quoting your reference ([e.g.|for example] "
      "{ref}).",
      "We aim to resolve complaints within {n_days} business days; if it takes longer, we'll "
      "send a final response within eight weeks [of receiving your complaint|of the date you "
      "complained].",
      "If you are not happy with our final response, you can refer your complaint to the "
      "Financial Ombudsman Service [within six months|free of charge]."],
     ["[Goodwill payments|Compensation] of {amt} [may be|were] [paid|offered] [where we got "
      "something wrong|for distress and inconvenience].",
      "[Complaint|Case] {ref} [was opened on|was logged on] {date_dmy} and [closed|resolved] on "
      "{date_dmy2}.",
      "[Our complaints data|Complaint figures] for [H1|H2] {year}: {n_big} complaints, "
      "{pct_num}% closed within three business days."]),
    # help desk documentation (ticket style, generic)
    (["[Example ticket|Sample case] in our [help desk guide|agent training]: {ref}, "
      "[opened|raised] via [phone|web form|chat|email] on {date_dmy} at {ptime}; [customer|"
      "caller] [cannot sign in|reports a duplicate payment of {amt}|requests a replacement "
      "card|asks for a copy statement].",
      "[Ticket statuses|Case statuses] [used by support teams|in the service desk] are: [new, "
      "open, pending, escalated, resolved and closed|new, awaiting customer, in progress, "
      "resolved].",
      "[Write case notes|Case notes should be written] [briefly|in short form], e.g. "
      "'[cust. verified, advised 3-5 working days, closed|cust. called re: pending payment, "
      "escalated to Tier 2|ID&V passed, card blocked, replacement ordered]'."],
     ["[Priority|Severity] {prio}; [assigned to|owner:] [Tier 1|Tier 2|the payments team|the "
      "fraud team].",
      "[SLA|Target response time]: {n_hours} hours.",
      "[Reopened|Escalated] on {date_dmy2} [by the customer|after a second call].",
      "[Abbreviations|Shorthand] used in notes: {gloss_bank}."]),
]

HEALTH_PUB_DOCS = [
    # medicine leaflets
    (["{drug} is a [medicine|type of medicine] [used to treat|that treats|prescribed for] "
      "{druguse}[; it belongs to a group of medicines called {drugclass}|].",
      "[How to take|Taking] {drug}: the usual [adult|starting] dose is {drugdose} {freqlong} "
      "({freqabbr})[, swallowed whole with water|, with or after food|].",
      "[Patient leaflet|Information leaflet|Medicine guide]: {drug} {drugdose} [tablets|"
      "capsules], [for|used in] {druguse}; [usual dosing|dose] {freqabbr} ({freqlong})."],
     ["[Common side effects|Side effects] [include|may include] {side}.",
      "[Speak to|Ask] your [pharmacist|GP|doctor] [before taking|if you are taking] [other "
      "medicines|anticoagulants|supplements] [at the same time|with it].",
      "[Keep|Store] [below 25 °C|at room temperature, below 25 °C|in a fridge at 2-8 °C|out of "
      "the sight and reach of children].",
      "[If you miss a dose|Missed dose?], take it [as soon as you remember|when you remember], "
      "unless it is nearly time for the next one.",
      "[A typical pack|One pack] contains {qty} [tablets|capsules]; repeat prescriptions [take|"
      "can take] {n_hours} hours to process.",
      "[Leaflet|Revised] {date_mon}[, ref. {ref}|]."]),
    # abbreviations on prescriptions and in notes
    (["[Common abbreviations|Abbreviations you may see] [on prescriptions|in clinic "
      "letters|in medical notes]: {gloss_med}.",
      "[On a prescription label|In your notes|In a clinic letter], {abmed}, {abmed2} and "
      "{abmed3}.",
      "[Reading a prescription|Prescription shorthand]: {rxex}."],
     ["[For example|So], {rxex2}.",
      "[Doses|Strengths] are [written|given] in [milligrams (mg)|micrograms (mcg or µg)|grams "
      "(g)|millilitres (mL)]; [never|do not] confuse mg with micrograms (1 mg = 1,000 µg).",
      "[Age and sex are often abbreviated|Notes often shorten age and sex], e.g. {agesexdef}.",
      "[Also|Other abbreviations]: {abmed4} and {abmed5}."]),
    # lab tests
    (["[The|A] {labname} [test|blood test] [measures|checks] {labdesc}; the [usual|normal] "
      "[adult|] reference range is {labrange}[, although ranges vary between "
      "laboratories|].",
      "[Understanding your results|Your blood test results explained]: a {labname} of "
      "{labval} [is compared with|is read against] the reference range of {labrange}.",
      "[Reference ranges|Normal ranges] for adults ([example laboratory|typical values]): "
      "{labranges}.",
      "[Example report|Sample result] ({sampleid}, collected {date_mon} at {ptime}): "
      "{labany}, {labany2}, {labany3}."],
     ["[Results|Values] [outside the range|flagged H or L] [are not always a concern|do not "
      "always mean something is wrong|may need a repeat test].",
      "[Some tests|Glucose and lipid tests] [need|require] a fasting sample: no food for "
      "[8|10|12] hours beforehand, water is fine.",
      "[If a sample is haemolysed|If the red cells in a sample have broken down (haemolysis)], "
      "[the result|potassium] may be [falsely high|unreliable] and [a repeat|another sample] "
      "[is needed|may be requested].",
      "[Results are usually|Most results are] [available|back] within {n_days} working days[ "
      "and shown in the app|].",
      "[H|(H)] means above and [L|(L)] below the range[; * marks a result phoned to the "
      "surgery|]."]),
    # vital signs and measurements
    (["[Normal vital signs|Typical adult observations] [for adults|at rest]: [blood pressure|"
      "BP] [below 120/80 mmHg|around 120/80 mmHg], [heart rate|pulse] 60-100 bpm, "
      "[temperature|temp] 36.1-37.2 °C, SpO2 95-100% and [respiratory rate|RR] 12-20 breaths "
      "a minute.",
      "[Home blood pressure monitoring|Checking your blood pressure at home]: [sit quietly|"
      "rest] for {n_min} minutes, [take two readings|take readings twice a day] and [write "
      "them down|record them] as, for example, {bp}.",
      "[Body mass index|BMI] is your weight in kilograms divided by your height in metres "
      "squared: {bmiex}.",
      "A high temperature [is usually|means] 38 °C or above (100.4 °F)[ in adults|]; "
      "[normal|typical] body temperature is about 37 °C (98.6 °F)."],
     ["[Example|Sample] observations: BP {bp}, HR {hr}, temp {temp}, SpO2 {sat}, RR {rr}, "
      "weight {weight}.",
      "A BMI of 18.5-24.9 kg/m² is [in the healthy range|considered healthy]; 25-29.9 kg/m² "
      "is overweight and 30 kg/m² or more obese.",
      "[Call|Contact] [111|your GP|the surgery] if readings are above 180/120 mmHg[ or you "
      "feel unwell|].",
      "Readings: {date_mon} {bp}; {date_mon2} {bp2}.",
      "[Waist size|Waist measurement] [over|above] 94 cm (37 in) in men or 80 cm (31.5 in) in "
      "women [increases|raises] the risk."]),
    # clinic information
    (["[The surgery|Our clinic|The health centre] is open {hours}; [appointments|"
      "consultations] can be [face-to-face, by telephone or by video|booked online or by "
      "phone on {phone}].",
      "[If you cannot attend|Can't make your appointment?], please [cancel|tell us] at least "
      "{n_hours} hours before: [patients who did not attend (DNA)|missed appointments] "
      "[cost|waste] around {n_big} appointments a month.",
      "[Repeat prescriptions|Repeat medicines] can be [ordered|requested] [online, in the app "
      "or at reception|through the app or your pharmacy] and are ready [within|after] "
      "{n_days} working days.",
      "[Referrals|Your referral] to [a specialist clinic|the hospital|physiotherapy|the "
      "diabetes service|the respiratory team] [usually take|can take] {n_weeks} weeks; [you "
      "will receive a letter|we will text you] with the date.",
      "[Flu vaccinations|Flu jabs|COVID-19 boosters] are offered to [adults aged 65 and "
      "over|people with {condpub}|pregnant women|carers] from {date_long}."],
     ["[Bring|Please bring] [a list of your medicines|your NHS number|photo ID] [to your "
      "appointment|with you].",
      "[Interpreters are available|An interpreter can be booked] in [Portuguese, Polish, "
      "Arabic and other languages|over {n_big} languages].",
      "[Test results|Results] are [given|discussed] [after 2 pm|by phone|in the app].",
      "[Chaperones are available|You may bring someone with you] for [any|intimate] "
      "examinations.",
      "{clinicname}, {street}, {city}, tel. {phone}[, practice code {practiceid}|].",
      "[The nurse-led clinics|Nurse clinics] [run|are held] on [Tuesdays|Wednesdays|Thursday "
      "mornings] with {nursename}."]),
    # conditions
    (["{condpub} [affects|is common in] about {pct_num}% of adults[ in the UK|]; [common "
      "symptoms|symptoms] [include|can include] {symptom}, {symptom2} and {symptom3}.",
      "[Living with|Managing] {condpub}: [take medicines as prescribed|keep active], [attend "
      "your annual review|go to regular reviews] and [know your numbers|keep a record of your "
      "readings].",
      "[Diabetes reviews|Diabetes checks] [usually include|include] HbA1c (target often "
      "[48|53] mmol/mol, [6.5|7.0]%), blood pressure, cholesterol, kidney function (eGFR) and "
      "[a foot check|eye screening].",
      "[Asthma|COPD] [inhalers|treatment]: [a blue reliever inhaler such as salbutamol|"
      "reliever: salbutamol] 100 micrograms, 1-2 puffs [as needed|PRN], [and a preventer "
      "inhaler twice a day (BD)|plus a preventer BD]."],
     ["[See a doctor urgently|Get urgent help] if you have {symptom4}[ or {symptom5}|].",
      "[Your nurse|The practice nurse|A pharmacist] can [review|check] [your inhaler "
      "technique|your medicines|your blood pressure] every {n_months} months.",
      "[Risk factors|Things that raise the risk] include [smoking, a BMI over 30 kg/m² and a "
      "family history|age over 40, high blood pressure and inactivity].",
      "[Typical treatment|Treatment often starts with] {rxpub}[, reviewed after {n_weeks} "
      "weeks|]."]),
    # teaching examples of clinical notes (fictional)
    (["[Worked example|Teaching case|Example note] (fictional patient): Pt {initial}, "
      "{age}{sex}, [presents with|c/o] {symptom}; obs: BP {bp}, HR {hr}, temp {temp}, SpO2 "
      "{sat}.",
      "[How to write|Writing] a SOAP note: S - what the patient reports, e.g. '{age}{sex}, "
      "c/o {symptom}'; O - obs and examination, e.g. BP {bp}, HR {hr}; A - assessment; P - "
      "plan.",
      "[Sample|Example] discharge summary (made-up): {initial}, {ptid}, admitted {date_mon}, "
      "discharged {date_mon2}; diagnosis: {condpub}.",
      "[Referral letter template|Example referral]: Dear {drname}, [thank you for seeing|I "
      "would be grateful if you could see] {initial} ({ptid}), {age}{sex}, with {condpub}."],
     ["Plan: {rxpub}, review in {n_weeks} weeks [with {nursename}|with {drname}|].",
      "Bloods: {labany}, {labany2}.",
      "[Safety-netting advice given|Advised to return if worse|Patient given a leaflet].",
      "[Allergies|Allergy status]: [NKDA (no known drug allergies)|penicillin (rash)|none "
      "known].",
      "Seen [at|in] {clinicname} on {date_mon} at {ptime}."]),
    # public health facts
    (["[Adults|Men and women] are advised not to drink more than 14 units of alcohol a week, "
      "spread over 3 or more days; a pint of 5.2% beer is about 3 units.",
      "[Adults should aim for|Aim for] at least 150 minutes of moderate activity a week, "
      "[or 75 minutes of vigorous activity|plus strength exercises on 2 days].",
      "[Adults should eat|Eat] no more than 6 g of salt a day (about a teaspoon); [the|a] "
      "[reference intake|daily guide] is 2,000 kcal for women and 2,500 kcal for men.",
      "[Screening programmes|Health checks] [invite|are offered to] adults aged "
      "[40-74|50-74|25-64] every [3|5] years[, free of charge|]."],
     ["[Babies|Children] need [a vitamin D supplement of 8.5-10 µg|10 micrograms of vitamin D] "
      "a day[ from birth|].",
      "[In {year}|Last year], {pct_num}% of eligible people [took up the offer|attended].",
      "[More information|Find out more] at [the pharmacy|your GP surgery|{clinicname}].",
      "[Published|Updated] {date_long}."]),
]

LEGAL_PUB_DOCS = [
    # model clauses
    (["{cl} [Limitation of liability.|Liability.|Cap on liability.] [Subject to clause "
      "{cl2},|Except as set out in clause {cl2},] [each party's|the Provider's] total "
      "liability [under or in connection with this agreement|arising under this contract] "
      "shall not exceed {capsum}[ in any twelve (12) month period|].",
      "{cl} [Term and termination.|Termination.] [Either party|The Client] may terminate "
      "this agreement [on|by giving] {nwords} [days'|Business Days'] written notice[ to the "
      "other party|], or immediately if the other party [commits a material breach|becomes "
      "insolvent].",
      "{cl} [Payment terms.|Invoicing.] [Invoices|Each invoice] shall be paid within {nwords} "
      "days of [receipt|the invoice date]; late payments [bear|carry] interest at "
      "{pct_small}% a year above [the Bank of England base rate|the base rate from time to "
      "time].",
      "{cl} [Confidentiality.|Confidential information.] [Each party|The Recipient] shall "
      "[keep confidential|not disclose] the other party's Confidential Information[, except to "
      "its professional advisers who need to know it,|] [during the Term and for|for] "
      "{nmonths} [months|years] after [termination|expiry].",
      "{cl} [Force majeure.|Events beyond control.] Neither party shall be [in breach|liable] "
      "for [delay|failure] caused by events beyond its reasonable control, provided it "
      "[notifies the other within {nwords} days|uses reasonable endeavours to mitigate].",
      "{cl} [Governing law and jurisdiction.|Governing law.] This agreement [and any "
      "non-contractual obligations arising out of it|] shall be governed by the law of "
      "{lawpub}[ and the parties submit to the exclusive jurisdiction of its courts|].",
      "{cl} [Notices.|Service of notices.] Any notice given under this agreement shall be in "
      "writing and [delivered by hand, by pre-paid first-class post or by email|sent to the "
      "address set out in clause {cl2}].",
      "{cl} [Assignment.|Assignment and subcontracting.] [Neither party|The Provider] shall "
      "[assign, transfer or subcontract|deal with] [any of its rights or obligations|this "
      "agreement] without the prior written consent of the other[, not to be unreasonably "
      "withheld|].",
      "{cl} [Indemnity.|Indemnities.] [The Provider|The Licensee|Each party] shall indemnify "
      "[the Client|the other party] against [all Losses|any claims] arising from [a breach of "
      "clause {cl2}|its negligence|infringement of third-party Intellectual Property Rights].",
      "{cl} [Data protection.|Personal data.] [Each party|The Processor] shall comply with "
      "[applicable data protection law|the UK GDPR and the Data Protection Act 2018] and "
      "shall notify the other [without undue delay, and in any event within {n_hours} "
      "hours,|promptly] of any personal data breach."],
     ["{subcl} Nothing in this agreement limits or excludes liability for death or personal "
      "injury caused by negligence, [or for fraud or fraudulent misrepresentation|fraud, or "
      "any liability that cannot be limited by law].",
      "{subcl} [Neither party|The Provider] shall be liable for [loss of profits, revenue or "
      "goodwill|any indirect or consequential loss|loss or corruption of data].",
      "{subcl} [This clause|Clause {cl3}] shall survive [termination or expiry|the "
      "termination] of this agreement.",
      "{subcl} [For the purposes of this clause,|In this clause,] {definition}.",
      "{subcl} Time for payment shall [not|] be of the essence.",
      "[Drafting note|Note]: [adjust the cap|the figure of {capsum} is an example only]; "
      "[see clause {cl3}|consider insurance cover]."]),
    # definitions
    (["{cl} [Definitions.|Interpretation.] In this agreement: {definition}; {definition2}[; "
      "and {definition3}|].",
      "1.1 [The following definitions apply in this agreement|In this agreement the following "
      "words have these meanings]: {definition}; {definition2}."],
     ["{subcl} A reference to a statute or statutory provision [includes|is a reference to] "
      "it as amended or re-enacted from time to time.",
      "{subcl} Clause and schedule headings shall not affect the interpretation of this "
      "agreement.",
      "{subcl} Words in the singular include the plural and [vice versa|in the plural include "
      "the singular].",
      "{subcl} A reference to writing or written includes email[ but not fax|].",
      "{subcl} [Any words following|Words introduced by] the terms including, include, in "
      "particular or for example are illustrative only."]),
    # statute-like sections
    (["{secn} {sechead}. (1) {stat} (2) {stat2}",
      "Section {secn} of {act} ({sechead}): (1) {stat} (2) {stat2}",
      "[Regulation|Reg.] {secn} {sechead}. (1) {stat} (2) {stat2}"],
     ["(3) {stat3}",
      "In this Part, \"relevant period\" has the meaning given in section {secn2}.",
      "[This section|Subsection (2)] comes into force on {date_long}.",
      "[Explanatory note|Note]: [s.|section] {secn} [replaces|amends] s. {secn3} of {act2}."]),
    # plain-English guides
    (["[What is a limitation period?|Limitation periods explained:] [In England and Wales,|"
      "Generally,] a claim for breach of contract must be brought within six (6) years of the "
      "breach, [or twelve (12) years for a deed|and a personal injury claim within three (3) "
      "years].",
      "'Without prejudice' [correspondence|letters] [cannot usually be shown to the court|is "
      "not normally admissible]; an offer marked 'without prejudice save as to costs' can be "
      "shown once [the court decides costs|liability is decided].",
      "[A Part 36 offer|Part 36 offers] [is a formal settlement offer|are formal offers to "
      "settle] under the Civil Procedure Rules (CPR); if it is refused and not beaten at "
      "trial, there are costs consequences.",
      "The small claims track deals with most claims worth up to £10,000; the fast track "
      "[covers claims up to £25,000|is for claims of £10,000-£25,000] and the multi-track "
      "[the rest|claims above that].",
      "A letter before claim should [set out|explain] the claim, the sum claimed (e.g. "
      "{sum_any}) and give the recipient {nwords} days to reply before proceedings are "
      "issued.",
      "[A restrictive covenant|Restrictive covenants] in an employment contract [is|are] "
      "enforceable only if [it protects a legitimate business interest|reasonable in scope "
      "and duration], [for example|such as] [a non-compete of {n_months} months|a "
      "non-solicitation clause].",
      "An indemnity is a promise to [make good|cover] [a specific loss|losses of a particular "
      "kind], while a claim for damages requires [proof of breach|the loss to be proved]."],
     ["[Court fees|Issue fees] depend on the sum claimed: for claims between £10,000.01 and "
      "£200,000 the fee is 5% of the claim.",
      "[This guide is general information|This is general guidance], not legal advice.",
      "[Deadlines|Time limits] [are strict|can be short]: [a claim to an Employment Tribunal "
      "must usually be made within three months less one day|an appeal may need to be filed "
      "within 21 days].",
      "[Last updated|Reviewed] {date_long}.",
      "[Glossary|Abbreviations]: {gloss_law}."]),
    # fictional case summaries
    (["[Case summary|Case note|Judgment summary]: {porg} v {porg2} ({year}) - {court} "
      "[held|found|decided] that {holding}.",
      "In {porg} v {porg2} ({year}), {court} [considered|dealt with] {issuepub} and [found "
      "in favour of the claimant|found for the defendant|dismissed the appeal|allowed the "
      "appeal in part].",
      "[Re|In re] {porg}, {court} [held|decided] that {holding}."],
     ["[Damages of|The claimant was awarded] {sum_any} [plus interest at {pct_small}%|"
      "together with costs].",
      "The hearing [lasted|took] [two|three|five] days before {judge}.",
      "[Claim|Case] No. {claimno}; judgment handed down on {date_long}.",
      "[Comment|Our view]: [the case shows|this is a reminder] [that notice clauses must be "
      "followed exactly|of the importance of clear drafting|that limitation periods are "
      "strictly applied].",
      "[The parties were|Each party was] represented by counsel; [permission to appeal was "
      "refused|costs were reserved]."]),
    # deeds, recitals and letters (templates)
    (["THIS AGREEMENT is dated {date_ord} and is made BETWEEN: (1) {porg}, a company "
      "incorporated in {lawpub} with company number {coyno} (\"{rolepub}\"); and (2) {porg2} "
      "(\"{rolepub2}\").",
      "[Dear Sir or Madam|Dear {ptitle} {plast}], [we act for|we are instructed by] {porg} "
      "[in relation to|regarding] [the lease of {premises}|the agreement dated {date_long}|"
      "the outstanding invoice for {sum_any}].",
      "IN WITNESS WHEREOF the parties have [executed this deed|signed this agreement] on "
      "{date_ord}. Signed by {pname}, director, for and on behalf of {porg}.",
      "[Without prejudice save as to costs.|Subject to contract.|Without prejudice.] [Our "
      "client|{porg}] [offers|is prepared] to [pay|accept] {sum_any} in full and final "
      "settlement of [the claim|all claims] [under reference {lref}|arising from the "
      "contract]."],
     ["[Please reply|Please respond] within {nwords} days [of the date of this letter|of "
      "receipt].",
      "Our ref: {lref}. Your ref: {lref2}.",
      "[We enclose|Please find enclosed] [a copy of the signed agreement|the draft heads of "
      "terms|our invoice for {sum_any}|the completion statement].",
      "BACKGROUND: (A) {porg} [carries on the business of|provides] {business}. (B) The "
      "parties [wish|have agreed] to [enter into|record] [this agreement|the terms of their "
      "arrangement].",
      "[We reserve|Our client reserves] all [its|their] rights.",
      "[Yours faithfully|Yours sincerely], {pname}, [Partner|Associate|Solicitor], {city}."]),
    # fees and time recording
    (["[Our hourly rates|Hourly rates] [from {date_long}|for {year}]: partner {rate}, senior "
      "associate {rate2}, associate {rate3}, trainee {rate4} (plus VAT at 20%).",
      "[Time is recorded|We record time] in units of six minutes (0.1 hour); a [short email|"
      "letter|phone call] is [usually|normally] recorded as [0.1|0.2|0.3] hours.",
      "[Estimate of costs|Costs estimate] for [a straightforward|an uncontested] [lease "
      "renewal|company sale|settlement agreement|debt claim]: {fee_range} plus VAT and "
      "disbursements."],
     ["[Disbursements|Third-party costs] such as [court fees|search fees|counsel's fees] are "
      "[charged at cost|passed on without mark-up].",
      "[Invoices|Bills] are payable within {nwords} days.",
      "[Example time entry|Time entry example]: {date_dmy}, {initials}, [drafting|reviewing|"
      "telephone attendance], {hrs} hours.",
      "[A deposit|Money on account] of {sum_any} [is|may be] requested [before work starts|"
      "at the outset]."]),
    # hearings and court notices
    (["[Notice of hearing|Hearing notice]: Claim No. {claimno}, {porg} v {porg2}, listed "
      "[at {ptime} on {date_long}|for {date_long} at {ptime}] in {court}, time estimate "
      "[1 hour|2 hours|1 day|3 days].",
      "[Order|Directions]: (1) disclosure by {date_long}; (2) witness statements by "
      "{date_long2}; (3) [expert reports|a trial window] by {date_long3}."],
     ["[Any application|An application] to vary must be made [at least|no later than] "
      "{ndays} days before the hearing.",
      "[Costs in the case|Costs reserved|No order as to costs].",
      "[Dated|Sealed] {date_long}."]),
]

PUB_DOCS += BANK_PUB_DOCS + HEALTH_PUB_DOCS + LEGAL_PUB_DOCS

# --------------------------------------------------------------------------------------------
# Acme Bank: support tickets, transaction disputes, account servicing (terse ticket style)
# --------------------------------------------------------------------------------------------

BANK_SLOTS = {
    "cust": person(FIRST, LAST),
    "agent": lambda rng, _c: f"{rng.choice(FIRST)} ({rng.randint(10000, 99999)})",
    "ticket": lambda rng, _c: f"AB-{rng.randint(2022, 2025)}-{rng.randint(100000, 999999)}",
    "case": digits(7, "DSP-"),
    "card": lambda rng, _c: "****" + "".join(rng.choice("0123456789") for _ in range(4)),
    "sortcode": lambda rng, _c: "-".join(f"{rng.randint(0, 99):02d}" for _ in range(3)),
    "iban": lambda rng, _c: f"GB{rng.randint(10, 99)} ACMB {rng.randint(1000, 9999)} "
                            f"**** **** {rng.randint(10, 99)}",
    "amount": money("£", 4.5, 4800.0),
    "eur": money("€", 6.0, 2500.0),
    "fee": lambda rng, _c: rng.choice(["£5.00", "£12.00", "£25.00", "£2.50", "€15.00"]),
    "limit": lambda rng, _c: f"£{rng.choice([500, 1000, 1500, 2000, 2500, 5000, 7500]):,}",
    "rate": lambda rng, _c: f"{rng.choice([1.25, 2.1, 3.45, 4.05, 4.6, 5.1, 19.9, 22.9])}% "
                            f"{rng.choice(['AER', 'APR', 'p.a.'])}",
    "date": lambda rng, c: "{2:02d}/{1:02d}/{0}".format(*_ymd(rng, c)),
    "days": lambda rng, _c: str(rng.choice([3, 5, 7, 10, 14, 30])),
    "acct": ["Everyday Current", "Premier Current", "Easy Access Saver", "Fixed Rate Bond",
             "Cash ISA", "Business Flex", "Student Plus", "Joint Current", "Platinum Credit Card",
             "Rewards Credit Card", "Regular Saver", "Foreign Currency Account"],
    "cardacct": ["Everyday Current", "Premier Current", "Student Plus", "Joint Current",
                 "Platinum Credit Card", "Rewards Credit Card", "Business Flex"],
    "merchant": ["PayNow*STREAMFLIX", "QuickMart Express", "SkyJet Airways", "Café Lumière",
                 "TOPUP MOBILE LTD", "Hotel Miramar Lisboa", "AMZ Mktp", "CityRide Taxis",
                 "Fitzgerald & Sons Hardware", "GreenGrocer Online", "Bäckerei Sommer",
                 "FX Kiosk Heathrow", "Zenith Electronics", "ParkSmart Ltd", "Trattoria Bellini"],
    "channel": ["in-app chat", "phone", "branch visit", "secure message", "web form", "email"],
    "branch": ["Leeds Briggate", "Manchester Deansgate", "Bristol Broadmead", "Glasgow Buchanan St",
               "Cardiff Queen St", "London Moorgate", "Belfast Donegall Pl", "Norwich Gentleman's Walk"],
    "tier": ["Tier 2", "the Fraud Operations team", "Disputes", "the Complaints team",
             "Card Services", "the Vulnerable Customers team", "Payments Ops"],
    "reason_was": ["not made by them", "charged twice", "for goods never received",
                   "already refunded by the merchant", "not recognised", "taken after they "
                   "cancelled the subscription", "for more than the agreed price"],
    "reason": ["not recognised", "charged twice", "goods not received", "refund not credited",
               "subscription cancelled but still charged", "amount differs from receipt",
               "cash not dispensed", "card used after reported lost"],
}

BANK_DOCS = [
    # support tickets
    (["Ticket {ticket} [opened via|raised through|logged from] {channel}: [customer|cust.|"
      "account holder] {cust} [reports|says|states] [they cannot log in to mobile banking|"
      "their card was declined at {merchant}|a standing order to {cust2} did not leave|"
      "their {acct} statement shows a fee of {fee} they do not understand].",
      "Ticket {ticket}. {cust} ({acct}, sort code {sortcode}) [requests|asks for|wants] "
      "[an overdraft increase to {limit}|a replacement debit card|a change of address|"
      "closure of the account|a paper statement for {date}].",
      "[New ticket|Ticket] {ticket}, {acct} ending {card}: [customer|cust.] [locked out "
      "after three failed passcode attempts|unable to add payee|did not receive the "
      "one-time passcode|sees a pending payment of {amount} twice]."],
     ["[Identity verified|ID&V passed|Customer verified] [by security questions|via app "
      "push|with card reader] [by agent {agent}|at {date}].",
      "[Advised|Informed|Told] customer [the request takes|to allow] up to {days} working "
      "days.",
      "Status: [escalated to|passed to|awaiting] {tier}.",
      "[Resolved on first contact|Closed, no further action|Reopened by customer on {date}]"
      " [by|per] {agent}.",
      "Note: customer [flagged as vulnerable|prefers contact by {channel}|has a second "
      "account at {branch}]."]),
    # transaction disputes
    (["Dispute {case}: {cust} [disputes|challenges|queries] a card payment of {amount} to "
      "{merchant} on {date}, reason: {reason}.",
      "[Chargeback|Dispute] [raised|opened] for {amount} [debited|taken] from {cardacct} {card} "
      "on {date}; merchant {merchant}; reason code: {reason}.",
      "{cust} [reports|states] a [foreign|contactless|online] transaction of {eur} at "
      "{merchant} on {date} was {reason_was}."],
     ["Provisional credit of {amount} [applied|issued|posted] [on {date2}|pending "
      "investigation].",
      "Card {card} [blocked|cancelled|frozen] and [a replacement ordered|reissued] "
      "[at customer request|as a precaution].",
      "[Merchant|Acquirer] [has|was] given {days} days to respond; [case|dispute] "
      "[referred to|held with] {tier}.",
      "[Customer confirms|Cust. confirms] [the card is still in their possession|no one "
      "else has access to the card|they did not share the passcode].",
      "Outcome: [refund of {amount} confirmed|dispute declined, evidence of authorisation|"
      "partial refund of {eur} agreed] on {date2}."]),
    # account servicing / product notes
    (["[Account note|Servicing note|Note on file]: {cust} [opened|switched to|upgraded to] "
      "a {acct} at {branch} on {date}.",
      "{acct} for {cust}: [interest rate changed to|new rate of|rate confirmed at] {rate} "
      "[from|effective] {date}.",
      "[Outbound|Inbound] [SEPA|SWIFT|Faster Payments] transfer of {eur} [to|from] "
      "{iban} [held for checks|released|returned by beneficiary bank] on {date}."],
     ["[Arrangement fee|Monthly fee|Charge] of {fee} [waived|refunded|applied] [as a "
      "goodwill gesture|per tariff|after review by {agent}].",
      "[Credit limit|Overdraft limit] [set at|reduced to|increased to] {limit}.",
      "[Welcome pack|Confirmation letter|Revised terms] [sent|posted|issued] to the "
      "customer's [registered address|app inbox].",
      "Balance at [close of business|time of call] was {amount}."]),
]

# --------------------------------------------------------------------------------------------
# Northwind Health: appointment notes, prescriptions, lab results (clinical shorthand)
# --------------------------------------------------------------------------------------------

LABS = [  # name, unit, low, high, reference low, reference high, decimals
    ("haemoglobin", "g/dL", 9.2, 17.5, 12.0, 16.5, 1),
    ("HbA1c", "%", 4.9, 10.4, 4.0, 6.0, 1),
    ("creatinine", "µmol/L", 48, 165, 60, 110, 0),
    ("eGFR", "mL/min/1.73m²", 28, 118, 60, 200, 0),
    ("potassium", "mmol/L", 3.1, 5.9, 3.5, 5.3, 1),
    ("sodium", "mmol/L", 129, 147, 133, 146, 0),
    ("TSH", "mIU/L", 0.1, 8.5, 0.4, 4.0, 2),
    ("LDL cholesterol", "mmol/L", 1.4, 5.8, 0.0, 3.0, 1),
    ("WBC", "×10⁹/L", 2.9, 15.5, 4.0, 11.0, 1),
    ("platelets", "×10⁹/L", 110, 460, 150, 400, 0),
    ("CRP", "mg/L", 0.5, 96, 0.0, 5.0, 1),
    ("fasting glucose", "mmol/L", 3.9, 12.4, 3.9, 6.0, 1),
    ("vitamin D", "nmol/L", 14, 110, 50, 200, 0),
    ("ferritin", "µg/L", 6, 380, 15, 300, 0),
    ("ALT", "U/L", 9, 140, 0, 40, 0),
]

MEDS = [  # drug, doses, frequencies, indications
    ("metformin", ["500 mg", "850 mg", "1 g"], ["BD", "with meals", "OD with breakfast"],
     ["type 2 diabetes"]),
    ("amlodipine", ["5 mg", "10 mg"], ["OD"], ["hypertension"]),
    ("atorvastatin", ["10 mg", "20 mg", "40 mg", "80 mg"], ["nocte", "OD"],
     ["hyperlipidaemia", "secondary prevention"]),
    ("ramipril", ["1.25 mg", "2.5 mg", "5 mg", "10 mg"], ["OD"],
     ["hypertension", "chronic kidney disease stage 3a"]),
    ("amoxicillin", ["500 mg"], ["TDS for 5 days", "TDS for 7 days"],
     ["community-acquired pneumonia", "acute otitis media", "sinusitis"]),
    ("salbutamol", ["100 micrograms"], ["2 puffs PRN", "1-2 puffs QDS PRN"], ["asthma", "COPD"]),
    ("levothyroxine", ["25 micrograms", "50 micrograms", "75 micrograms", "100 micrograms"],
     ["OD before breakfast"], ["hypothyroidism"]),
    ("sertraline", ["50 mg", "100 mg"], ["OD"], ["depression", "anxiety"]),
    ("omeprazole", ["20 mg", "40 mg"], ["OD", "BD for 4 weeks"], ["GORD", "dyspepsia"]),
    ("ibuprofen", ["200 mg", "400 mg"], ["TDS PRN with food"],
     ["osteoarthritis of the knee", "lower back pain"]),
    ("doxycycline", ["100 mg"], ["OD for 7 days", "BD on day 1 then OD"],
     ["infective exacerbation of COPD", "cellulitis"]),
    ("prednisolone", ["5 mg", "30 mg", "40 mg"], ["OD for 5 days", "OD, tapering"],
     ["acute asthma", "COPD exacerbation"]),
    ("cetirizine", ["10 mg"], ["OD PRN"], ["hay fever", "urticaria"]),
    ("paracetamol", ["500 mg", "1 g"], ["QDS PRN, max 4 g/24 h"], ["pain", "fever"]),
    ("bisoprolol", ["1.25 mg", "2.5 mg", "5 mg"], ["OD"], ["atrial fibrillation", "angina"]),
    ("apixaban", ["2.5 mg", "5 mg"], ["BD"], ["atrial fibrillation"]),
    ("nitrofurantoin", ["50 mg", "100 mg"], ["QDS for 3 days", "MR BD for 3 days"],
     ["uncomplicated UTI"]),
]


def _med(rng, ctx) -> tuple:
    # One drug per document for {rx} and {indication}; {rxb} is an independent second drug.
    if "_med" not in ctx:
        ctx["_med"] = rng.choice(MEDS)
    return ctx["_med"]


def prescription(rng, ctx):
    drug, doses, freqs, _ = _med(rng, ctx)
    return f"{drug} {rng.choice(doses)} {rng.choice(freqs)}"


def other_prescription(rng, _ctx):
    drug, doses, freqs, _ = rng.choice(MEDS)
    return f"{drug} {rng.choice(doses)} {rng.choice(freqs)}"


def indication(rng, ctx):
    return rng.choice(_med(rng, ctx)[3])


def lab_result(rng, _ctx):
    name, unit, lo, hi, rlo, rhi, dec = rng.choice(LABS)
    v = round(rng.uniform(lo, hi), dec)
    flag = " (H)" if v > rhi else " (L)" if v < rlo else ""
    sep = "" if unit == "%" else " "
    return f"{name} {v:.{dec}f}{sep}{unit}{flag}"


HEALTH_SLOTS = {
    "pt": lambda rng, _c: f"{rng.choice(FIRST)[0]}. {rng.choice(LAST)}",
    "mrn": digits(7, "NWH-"),
    "age": lambda rng, _c: str(rng.randint(19, 91)),
    "sex": ["M", "F"],
    "dr": lambda rng, _c: f"Dr {rng.choice(LAST)}",
    "nurse": lambda rng, _c: f"{rng.choice(['RN', 'Nurse', 'ANP'])} {rng.choice(FIRST)}",
    "date": lambda rng, c: (lambda y, m, d: f"{d:02d}-{MONTHS[m - 1][:3]}-{y}")(*_ymd(rng, c)),
    "time": lambda rng, _c: f"{rng.randint(8, 17):02d}:{rng.choice(['00', '10', '20', '30', '40', '50'])}",
    "weeks": lambda rng, _c: str(rng.choice([2, 4, 6, 8, 12])),
    "cond": ["type 2 diabetes", "hypertension", "asthma", "hypothyroidism", "COPD",
             "atrial fibrillation", "GORD", "depression", "osteoarthritis of the knee",
             "chronic kidney disease stage 3a", "hyperlipidaemia", "eczema", "migraine"],
    "complaint": ["productive cough for 6 days", "intermittent chest tightness", "lower back "
                  "pain after lifting", "sore throat and fever", "fatigue and low mood",
                  "dizziness on standing", "rash on both forearms", "burning on urination",
                  "headaches, worse in the morning", "swollen left ankle", "palpitations at night",
                  "shortness of breath on exertion"],
    "lab": lab_result,
    "rx": prescription,
    "rxb": other_prescription,
    "indication": indication,
    "bp": lambda rng, _c: f"{rng.randint(104, 172)}/{rng.randint(62, 104)} mmHg",
    "hr": lambda rng, _c: f"{rng.randint(52, 118)} bpm",
    "temp": lambda rng, _c: f"{rng.uniform(36.1, 39.2):.1f} °C",
    "sat": lambda rng, _c: f"{rng.randint(91, 100)}%",
    "weight": lambda rng, _c: f"{rng.uniform(48, 128):.1f} kg",
    "bmi": lambda rng, _c: f"{rng.uniform(18.5, 41.0):.1f} kg/m²",
    "clinic": ["Northwind Riverside Clinic", "Northwind Eastgate Surgery", "the diabetes clinic",
               "the respiratory clinic", "the anticoagulation clinic", "Northwind Walk-in Centre"],
    "refills": lambda rng, _c: str(rng.choice([0, 0, 1, 2, 3, 5])),
    "qty": lambda rng, _c: str(rng.choice([14, 21, 28, 30, 56, 60, 84, 90])),
}

HEALTH_DOCS = [
    # appointment notes
    (["Pt {pt} ({mrn}), {age}{sex}, seen [on {date}|{date} at {time}] by {dr} [for|re:] "
      "[follow-up of {cond}|annual review of {cond}|{complaint}].",
      "[Appt|Appointment] {date} {time}, {clinic}: {pt}, {age}{sex}, [presents with|c/o|"
      "reports] {complaint}.",
      "[Telephone|Video|Face-to-face] consultation, {pt} ({mrn}) with {dr}: [review of|"
      "medication review for] {cond}[, stable| since last visit|]."],
     ["Obs: BP {bp}, HR {hr}, temp {temp}, SpO2 {sat}.",
      "[Weight|Wt] {weight}, BMI {bmi}.",
      "[Plan|Impression]: [continue current medication|start {rx} for {indication}|increase dose, see "
      "below|refer to {clinic}|safety-netting advice given] and review in {weeks} weeks.",
      "[Bloods requested|Repeat bloods|Labs ordered]: {lab} [noted at last visit|to be "
      "rechecked].",
      "[DNA'd previous appointment|Attended with daughter|Interpreter used (Portuguese)|"
      "No known drug allergies|Allergic to penicillin]."]),
    # prescriptions
    (["Rx [issued|authorised|renewed] {date} by {dr} for {pt} ({mrn}): {rx}, [disp.|qty] "
      "{qty}, refills {refills}.",
      "[New prescription|Prescription] for {pt}, {age}{sex}: {rx} for {indication}, "
      "[supply|quantity] {qty} [days|doses].",
      "[Repeat|Acute] prescription, {pt} ({mrn}): {rx} [for {indication}|]; [stop|withhold|reduce] {rxb} "
      "[from {date}|until reviewed]."],
     ["[Counselled on|Advised re:|Discussed] [side effects|adherence|taking with food|"
      "avoiding alcohol].",
      "[Pharmacy|Dispensary] notified [electronically|by fax] at {time}.",
      "Next medication review in {weeks} weeks with {nurse}.",
      "[Interaction checked|No interactions flagged] with current {rxb}."]),
    # lab results
    (["[Lab results|Results|Pathology] for {pt} ({mrn}), [collected|sampled] {date}: {lab}, "
      "{lab2}, {lab3}.",
      "{lab}; {lab2} ([repeat|first] sample, {date}) for {pt}, {age}{sex}.",
      "[Results reviewed by|Reviewed:] {dr}, {date}: {pt}, {lab} and {lab2}."],
     ["[Abnormal results discussed with patient by phone|Patient informed via app|"
      "Letter sent to patient] at {time}.",
      "[Action|Plan]: [repeat in {weeks} weeks|no action needed|book appointment with "
      "{dr}|urgent review today].",
      "[Fasting|Non-fasting] sample; [haemolysed, repeat requested|result within expected "
      "range for {cond}|consistent with {cond}]."]),
]

# --------------------------------------------------------------------------------------------
# Globex Legal: contract clauses, case memos, correspondence (formal drafting style)
# --------------------------------------------------------------------------------------------

ORG_A = ["Halvorsen Shipping", "Brightwater Renewables", "Castellano Foods", "Müller Präzision",
         "Orchard Lane Developments", "Kestrel Aviation Services", "Lumen Analytics",
         "Baptiste & Fils", "Redfern Logistics", "Ólafsson Seafood", "Northgate Pharma",
         "Quayside Hotels", "Sable Mining", "Tidewell Water", "Vertex Robotics", "Zephyr Textiles"]
ORG_SUFFIX = ["Ltd", "Limited", "plc", "LLP", "GmbH", "S.A.", "AS", "B.V.", "SARL", "Inc."]

LEGAL_SLOTS = {
    "party": lambda rng, _c: f"{rng.choice(ORG_A)} {rng.choice(ORG_SUFFIX)}",
    "person": lambda rng, _c: rng.choice(["", "", "", "Dr ", "Prof. "]) + rng.choice(FIRST)
                              + " " + rng.choice(LAST),
    "role": ["the Supplier", "the Customer", "the Licensor", "the Licensee", "the Landlord",
             "the Tenant", "the Purchaser", "the Seller", "the Contractor", "the Employer",
             "the Borrower", "the Lender"],
    "clause": lambda rng, _c: f"{rng.randint(2, 24)}.{rng.randint(1, 9)}"
                              + rng.choice(["", "", f"({rng.choice('abcdef')})"]),
    "date": lambda rng, c: (lambda y, m, d: f"{d} {MONTHS[m - 1]} {y}")(*_ymd(rng, c)),
    "odate": lambda rng, c: (lambda y, m, d: f"the {_ordinal(d)} day of {MONTHS[m - 1]} {y}")(
        *_ymd(rng, c)),
    "claim": lambda rng, _c: f"{rng.choice(['HC', 'CL', 'BL', 'KB'])}-{rng.randint(2021, 2025)}-"
                             f"{rng.randint(0, 9999):06d}",
    "matter": digits(6, "GLX/"),
    "sum": lambda rng, _c: rng.choice(["£", "€", "US$"])
                           + f"{rng.choice([5, 10, 25, 40, 75, 120, 250, 500, 1200]) * 1000:,}",
    "pct": lambda rng, _c: f"{rng.choice([2, 3, 4, 5, 8])}",
    "days": lambda rng, _c: rng.choice(["five (5)", "ten (10)", "fourteen (14)", "thirty (30)",
                                        "sixty (60)", "ninety (90)"]),
    "months": lambda rng, _c: rng.choice(["six (6)", "twelve (12)", "eighteen (18)",
                                          "twenty-four (24)", "thirty-six (36)"]),
    "law": ["England and Wales", "Scotland", "Ireland", "the State of New York", "Singapore"],
    "court": ["the High Court", "the Commercial Court", "the Court of Appeal",
              "the Technology and Construction Court", "the Employment Tribunal",
              "the LCIA tribunal"],
    "issue": ["the limitation period", "whether the notice was validly served",
              "the scope of the indemnity", "the enforceability of the restrictive covenant",
              "the measure of damages", "whether time was of the essence",
              "the incorporation of the standard terms", "the exclusion of consequential loss"],
    "fee_earner": lambda rng, _c: f"{rng.choice(FIRST)[0]}{rng.choice(LAST)[0]}".upper(),
}

LEGAL_DOCS = [
    # contract clauses
    (["{clause} [Limitation of Liability.|Liability.] [Subject to Clause {clause2},|Save "
      "as expressly provided,] neither party shall be liable to the other for any "
      "[indirect or consequential loss|loss of profit or revenue|loss of data or goodwill] "
      "arising under this Agreement.",
      "{clause} [Termination.|Termination for Convenience.] Either party may terminate this "
      "Agreement by giving not less than {days} days' written notice to the other party.",
      "{clause} [Payment.|Fees.] {role} shall pay all undisputed invoices within {days} "
      "days of receipt, and interest shall accrue on late payments at {pct}% per annum above "
      "the Bank of England base rate.",
      "{clause} [Confidentiality.|Confidential Information.] Each party shall keep the "
      "other's Confidential Information secret and shall not disclose it [save to its "
      "professional advisers|except as required by law] for {months} months after "
      "termination.",
      "{clause} [Governing Law.|Law and Jurisdiction.] This Agreement and any dispute "
      "arising out of it shall be governed by the laws of {law}."],
     ["The aggregate liability of {role} shall not exceed {sum} in any contract year.",
      "Nothing in this Clause shall limit liability for death or personal injury caused "
      "by negligence, or for fraud.",
      "Any notice under this Clause shall be in writing and delivered [by hand|by recorded "
      "delivery|by email to the address in Schedule 2].",
      "[This Clause|Clause {clause}] shall survive termination [or expiry] of this "
      "Agreement."]),
    # case memo snippets
    (["[Memo re:|Re:|Matter {matter}:] {party} v {party2} (Claim No. {claim}): we "
      "[have reviewed|were asked to advise on] {issue}.",
      "[Note of advice|Case note] ({fee_earner}, {date}): in {party} v {party2}, "
      "{court} [held|found|declined to find] [that {issue} favoured the claimant|in "
      "favour of the defendant on {issue}].",
      "[Attendance note|File note], matter {matter}: call with {person} of {party} on "
      "{date} regarding {issue}."],
     ["[In our view|On balance|We consider that] the claimant has [reasonable|good|"
      "limited] prospects on {issue2}.",
      "The hearing is listed in {court} for {date2}[, time estimate two days|].",
      "[Quantum|The claim] is put at {sum}, [together with|plus] interest and costs.",
      "[Next steps|Action]: [disclosure by {date2}|instruct counsel|prepare a Part 36 offer|"
      "seek the client's instructions on settlement].",
      "[Time recorded|Time]: [0.6|1.2|2.5|0.3] hours ({fee_earner})."]),
    # correspondence and recitals
    (["THIS AGREEMENT is made on {odate} between {party} (\"{role}\") and {party2} "
      "(\"{role2}\").",
      "[Dear|Dear] {person}, we act for {party} in connection with [the lease of Unit "
      "{pct}|the supply agreement dated {date}|the share purchase dated {date}].",
      "[Without prejudice save as to costs.|Subject to contract.] Our client, {party}, "
      "[is prepared to|proposes to] settle Claim No. {claim} for {sum} in full and final "
      "settlement."],
     ["[Please acknowledge receipt|Kindly confirm] within {days} days of the date of this "
      "letter.",
      "[We reserve|Our client reserves] all rights in relation to {issue}.",
      "[A copy of|We enclose] the [signed deed|draft heads of terms|completion statement] "
      "[for your records|for approval].",
      "Our reference: {matter}/{fee_earner}."]),
]

SPECS = {
    "acme-bank": (BANK_SLOTS, BANK_DOCS),
    "northwind-health": (HEALTH_SLOTS, HEALTH_DOCS),
    "globex-legal": (LEGAL_SLOTS, LEGAL_DOCS),
}

PROMPTS = {
    "acme-bank": "Ticket AB-2024-318207 opened via phone: customer",
    "northwind-health": "Pt J. Okafor (NWH-0031877), 58F, seen on",
    "globex-legal": "14.2 Limitation of Liability. Subject to Clause",
}

# --------------------------------------------------------------------------------------------
# Drawing documents
# --------------------------------------------------------------------------------------------


def draw(rng, slots, docs, min_words=MIN_WORDS, max_words=MAX_WORDS, extra=(0, 2)) -> str:
    for _ in range(100):
        first, more = rng.choice(docs)
        text = sentences(rng, slots, first, more, extra)
        if min_words <= len(text.split()) <= max_words:
            return text
    raise RuntimeError("templates cannot meet the word-count bounds")


def draw_unique(rng, slots, docs, n, exclude=frozenset(), **kw) -> list[str]:
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"could only draw {len(out)} of {n} distinct records")
        t = draw(rng, slots, docs, **kw)
        if t in seen or t in exclude:
            continue
        seen.add(t)
        out.append(t)
    return out


def stream(seed: int, name: str) -> random.Random:
    # Seeding with a str is deterministic across runs and platforms (sha512 of the string).
    return random.Random(f"bastion-gpt-finetune:{seed}:{name}")


def write_jsonl(path: str, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def generate(out: str, seed: int, public_lines: int, records: int, heldout: int) -> dict:
    os.makedirs(out, exist_ok=True)
    summary = {}
    pub = draw_unique(stream(seed, "public"), PUB_SLOTS, PUB_DOCS, public_lines, extra=(0, 3))
    with open(os.path.join(out, "public.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(pub) + "\n")
    summary["public.txt"] = len(pub)
    for company in COMPANIES:
        slots, docs = SPECS[company]
        d = os.path.join(out, company)
        os.makedirs(d, exist_ok=True)
        train = draw_unique(stream(seed, company + ":train"), slots, docs, records)
        held = draw_unique(stream(seed, company + ":heldout"), slots, docs, heldout,
                           exclude=frozenset(train))
        write_jsonl(os.path.join(d, "train.jsonl"), train)
        write_jsonl(os.path.join(d, "heldout.jsonl"), held)
        summary[f"{company}/train.jsonl"] = len(train)
        summary[f"{company}/heldout.jsonl"] = len(held)
    with open(os.path.join(out, "prompts.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(PROMPTS[c] + "\n" for c in COMPANIES))
    summary["prompts.txt"] = len(COMPANIES)
    return summary


# --------------------------------------------------------------------------------------------
# Self-check (--check): what was written parses, respects the bounds, and the corpora differ
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def check(out: str, records: int, heldout: int) -> list[str]:
    errors: list[str] = []
    counts: dict[str, collections.Counter] = {}
    heldout_texts: dict[str, list[str]] = {}
    private_texts: set[str] = set()
    for company in COMPANIES:
        texts = {}
        for split, want in (("train", records), ("heldout", heldout)):
            path = os.path.join(out, company, f"{split}.jsonl")
            texts[split] = []
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        errors.append(f"{path}:{i}: not JSON ({e})")
                        continue
                    t = rec.get("text") if isinstance(rec, dict) else None
                    if not isinstance(t, str) or not t.strip():
                        errors.append(f"{path}:{i}: no non-empty \"text\"")
                        continue
                    n = len(t.split())
                    if not MIN_WORDS <= n <= MAX_WORDS:
                        errors.append(f"{path}:{i}: {n} words, outside {MIN_WORDS}-{MAX_WORDS}")
                    texts[split].append(t)
            if len(texts[split]) != want:
                errors.append(f"{path}: {len(texts[split])} records, expected {want}")
            if len(set(texts[split])) != len(texts[split]):
                errors.append(f"{path}: duplicate records")
        heldout_texts[company] = texts["heldout"]
        private_texts.update(texts["train"])
        private_texts.update(texts["heldout"])
        leaked = set(texts["train"]) & set(texts["heldout"])
        if leaked:
            errors.append(f"{company}: {len(leaked)} held-out records also in train")
        counts[company] = collections.Counter(
            w.lower() for t in texts["train"] for w in _WORD.findall(t))
        if not any(ord(ch) > 127 for t in texts["train"] for ch in t):
            errors.append(f"{company}: no non-ASCII text at all")

    # Distinctive words: frequency in this company over the smoothed frequency in the others.
    total = {c: sum(counts[c].values()) for c in COMPANIES}
    top: dict[str, list[str]] = {}
    for c in COMPANIES:
        others = [o for o in COMPANIES if o != c]
        other_n = sum(total[o] for o in others)

        def score(w):
            p = counts[c][w] / total[c]
            q = (sum(counts[o][w] for o in others) + 1) / other_n
            return (p / q, w)

        min_count = max(2, round(20 * records / 1500))
        cands = [w for w, k in counts[c].items() if k >= min_count]
        top[c] = sorted(cands, key=score, reverse=True)[:12]
        print(f"  {c}: distinctive words: {', '.join(top[c])}", file=sys.stderr)
    for i, a in enumerate(COMPANIES):
        for b in COMPANIES[i + 1:]:
            va = {w for w, _ in counts[a].most_common(150)}
            vb = {w for w, _ in counts[b].most_common(150)}
            j = len(va & vb) / len(va | vb)
            print(f"  {a} / {b}: Jaccard of top-150 vocabularies {j:.2f}", file=sys.stderr)
            if j > 0.35:
                errors.append(f"{a} and {b}: vocabularies too similar (Jaccard {j:.2f})")
            if set(top[a]) & set(top[b]) and records >= 500:  # too noisy on tiny corpora
                errors.append(f"{a} and {b}: share distinctive words {set(top[a]) & set(top[b])}")

    # The public corpus shares the register: most private word tokens occur in it.
    with open(os.path.join(out, "public.txt"), encoding="utf-8") as f:
        pub_lines = f.read().splitlines()
    if not pub_lines or any(not ln.strip() for ln in pub_lines):
        errors.append("public.txt: empty or has blank lines")
    pub_vocab = {w.lower() for ln in pub_lines for w in _WORD.findall(ln)}
    for c in COMPANIES:
        cov = sum(k for w, k in counts[c].items() if w in pub_vocab) / total[c]
        print(f"  {c}: {cov:.0%} of word tokens occur in public.txt", file=sys.stderr)

    # Every character of the held-out text should occur in public.txt, or the tokenizer trained
    # on it never learns those bytes' tokens and the base model is overconfident against them.
    pub_chars = {ch for ln in pub_lines for ch in ln}
    pub_bigrams = {ln[i:i + 2] for ln in pub_lines for i in range(len(ln) - 1)}
    for c in COMPANIES:
        chars = collections.Counter(ch for t in heldout_texts[c] for ch in t)
        missing = sorted(ch for ch in chars if ch not in pub_chars)
        cov = 1 - sum(chars[ch] for ch in missing) / max(1, sum(chars.values()))
        bigrams = collections.Counter(t[i:i + 2] for t in heldout_texts[c]
                                      for i in range(len(t) - 1))
        bcov = sum(k for b, k in bigrams.items() if b in pub_bigrams) / max(1, sum(bigrams.values()))
        print(f"  {c}: {cov:.2%} of held-out characters and {bcov:.1%} of character pairs "
              f"occur in public.txt" + (f"; missing {''.join(missing)!r}" if missing else ""),
              file=sys.stderr)
        if missing and len(pub_lines) >= 2000:  # small corpora may miss a rare letter
            errors.append(f"{c}: held-out characters absent from public.txt: {''.join(missing)!r}")

    # public.txt holds no company record, identifier format or organisation of theirs.
    private_marks = re.compile(
        r"AB-\d{4}-\d{6}|DSP-\d{7}|NWH-\d{7}|GLX/\d{6}|\b(?:HC|CL|BL|KB)-\d{4}-\d{6}|ACMB"
        r"|\b(?:Acme|Northwind|Globex)\b|"
        + "|".join(re.escape(n) for n in ORG_A + BANK_SLOTS["merchant"] + BANK_SLOTS["branch"]))
    for i, ln in enumerate(pub_lines, 1):
        m = private_marks.search(ln)
        if ln in private_texts or m:
            errors.append(f"public.txt:{i}: private record or identifier"
                          + (f" ({m.group(0)!r})" if m else ""))
            break
    with open(os.path.join(out, "prompts.txt"), encoding="utf-8") as f:
        if len([ln for ln in f.read().splitlines() if ln.strip()]) != len(COMPANIES):
            errors.append("prompts.txt: expected one prompt per company")
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory to write into (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--public-lines", type=int, default=6000,
                    help="documents in public.txt (default 6000)")
    ap.add_argument("--records", type=int, default=1500,
                    help="train records per company (default 1500)")
    ap.add_argument("--heldout", type=int, default=200,
                    help="held-out records per company (default 200)")
    ap.add_argument("--check", action="store_true",
                    help="verify the written files afterwards; exit 1 on any problem")
    args = ap.parse_args()
    for name in ("public_lines", "records", "heldout"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")

    t0 = time.monotonic()
    summary = generate(args.out, args.seed, args.public_lines, args.records, args.heldout)
    width = max(map(len, summary))
    print(f"make_corpora: seed {args.seed}, wrote into {args.out}/ "
          f"in {time.monotonic() - t0:.2f} s:", file=sys.stderr)
    for name, n in summary.items():
        unit = "prompts" if name == "prompts.txt" else "lines" if name.endswith(".txt") else "records"
        print(f"  {name:<{width}}  {n:>5} {unit}", file=sys.stderr)
    if args.check:
        errors = check(args.out, args.records, args.heldout)
        for e in errors:
            print(f"check: {e}", file=sys.stderr)
        if errors:
            return 1
        print("check: ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

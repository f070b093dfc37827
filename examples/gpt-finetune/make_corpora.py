#!/usr/bin/env python3
"""Write the synthetic corpora of the gpt-finetune example (Python 3.11, stdlib only).

No public or private text corpus ships with the machine this example runs on, so this script
writes one public corpus and three companies' confidential corpora, deterministically from
--seed:

  OUT/public.txt                       generic office English, one document per line
                                       (the non-private pre-training corpus)
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
# Public corpus: generic office English (announcements, meeting notes, how-to, reminders)
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
      "[on {weekday}|this {weekday}|on {date}] at {time}].",
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
    pub = draw_unique(stream(seed, "public"), PUB_SLOTS, PUB_DOCS, public_lines,
                      min_words=12, max_words=70, extra=(0, 3))
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

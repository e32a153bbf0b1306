"""Kinds of transactions (merchant, categories, usual amounts) and which accounts see them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Merchant:
    """A kind of transaction: who, how it is categorised, and its usual amount range."""

    name: str
    merchant_name: str | None
    category: tuple[str, ...]
    category_id: str
    pfc_primary: str
    pfc_detailed: str
    channel: str
    low: float
    high: float
    website: str | None = None

    @property
    def in_store(self) -> bool:
        return self.channel == "in store"


def _m(
    name: str,
    merchant: str | None,
    category: tuple[str, ...],
    category_id: str,
    pfc: tuple[str, str],
    channel: str,
    amounts: tuple[float, float],
    website: str | None = None,
) -> Merchant:
    return Merchant(
        name, merchant, category, category_id, pfc[0], pfc[1], channel, *amounts, website
    )


_FOOD = "FOOD_AND_DRINK"
_SHOPS = "GENERAL_MERCHANDISE"
_SPENDING: tuple[Merchant, ...] = (
    _m(
        "Starbucks",
        "Starbucks",
        ("Food and Drink", "Restaurants", "Coffee Shop"),
        "13005043",
        (_FOOD, "FOOD_AND_DRINK_COFFEE"),
        "in store",
        (3.25, 11.8),
        "starbucks.com",
    ),
    _m(
        "McDonald's",
        "McDonald's",
        ("Food and Drink", "Restaurants", "Fast Food"),
        "13005032",
        (_FOOD, "FOOD_AND_DRINK_FAST_FOOD"),
        "in store",
        (4.5, 19.0),
        "mcdonalds.com",
    ),
    _m(
        "Chipotle Mexican Grill",
        "Chipotle",
        ("Food and Drink", "Restaurants"),
        "13005000",
        (_FOOD, "FOOD_AND_DRINK_RESTAURANT"),
        "in store",
        (9.0, 31.0),
        "chipotle.com",
    ),
    _m(
        "Whole Foods Market",
        "Whole Foods",
        ("Shops", "Supermarkets and Groceries"),
        "19047000",
        (_FOOD, "FOOD_AND_DRINK_GROCERIES"),
        "in store",
        (18.0, 185.0),
        "wholefoodsmarket.com",
    ),
    _m(
        "Trader Joe's",
        "Trader Joe's",
        ("Shops", "Supermarkets and Groceries"),
        "19047000",
        (_FOOD, "FOOD_AND_DRINK_GROCERIES"),
        "in store",
        (12.0, 120.0),
        "traderjoes.com",
    ),
    _m(
        "Uber 063015 SF**POOL**",
        "Uber",
        ("Travel", "Taxi"),
        "22016000",
        ("TRANSPORTATION", "TRANSPORTATION_TAXIS_AND_RIDE_SHARES"),
        "online",
        (7.5, 46.0),
        "uber.com",
    ),
    _m(
        "Lyft",
        "Lyft",
        ("Travel", "Taxi"),
        "22016000",
        ("TRANSPORTATION", "TRANSPORTATION_TAXIS_AND_RIDE_SHARES"),
        "online",
        (7.0, 42.0),
        "lyft.com",
    ),
    _m(
        "Shell",
        "Shell",
        ("Travel", "Gas Stations"),
        "22009000",
        ("TRANSPORTATION", "TRANSPORTATION_GAS"),
        "in store",
        (24.0, 82.0),
        "shell.com",
    ),
    _m(
        "United Airlines",
        "United Airlines",
        ("Travel", "Airlines and Aviation Services"),
        "22001000",
        ("TRAVEL", "TRAVEL_FLIGHTS"),
        "online",
        (118.0, 640.0),
        "united.com",
    ),
    _m(
        "AMZN Mktp US",
        "Amazon",
        ("Shops", "Digital Purchase"),
        "19013000",
        (_SHOPS, "GENERAL_MERCHANDISE_ONLINE_MARKETPLACES"),
        "online",
        (6.0, 240.0),
        "amazon.com",
    ),
    _m(
        "Target",
        "Target",
        ("Shops", "Department Stores"),
        "19018000",
        (_SHOPS, "GENERAL_MERCHANDISE_SUPERSTORES"),
        "in store",
        (9.0, 210.0),
        "target.com",
    ),
    _m(
        "The Home Depot",
        "The Home Depot",
        ("Shops", "Hardware Store"),
        "19028000",
        ("HOME_IMPROVEMENT", "HOME_IMPROVEMENT_HARDWARE"),
        "in store",
        (14.0, 390.0),
        "homedepot.com",
    ),
    _m(
        "Apple.com/bill",
        "Apple",
        ("Shops", "Computers and Electronics"),
        "19013000",
        (_SHOPS, "GENERAL_MERCHANDISE_ELECTRONICS"),
        "online",
        (0.99, 29.99),
        "apple.com",
    ),
    _m(
        "CVS/Pharmacy",
        "CVS Pharmacy",
        ("Shops", "Pharmacies"),
        "19043000",
        ("MEDICAL", "MEDICAL_PHARMACIES_AND_SUPPLEMENTS"),
        "in store",
        (4.0, 64.0),
        "cvs.com",
    ),
    _m(
        "Netflix",
        "Netflix",
        ("Service", "Subscription"),
        "18061000",
        ("ENTERTAINMENT", "ENTERTAINMENT_TV_AND_MOVIES"),
        "online",
        (15.49, 15.49),
        "netflix.com",
    ),
    _m(
        "Spotify",
        "Spotify",
        ("Service", "Subscription"),
        "18061000",
        ("ENTERTAINMENT", "ENTERTAINMENT_MUSIC_AND_AUDIO"),
        "online",
        (10.99, 10.99),
        "spotify.com",
    ),
    _m(
        "Planet Fitness",
        "Planet Fitness",
        ("Recreation", "Gyms and Fitness Centers"),
        "17018000",
        ("PERSONAL_CARE", "PERSONAL_CARE_GYMS_AND_FITNESS_CENTERS"),
        "in store",
        (10.0, 24.99),
        "planetfitness.com",
    ),
)
_BILLS: tuple[Merchant, ...] = (
    _m(
        "Comcast",
        "Comcast",
        ("Service", "Cable"),
        "18009000",
        ("RENT_AND_UTILITIES", "RENT_AND_UTILITIES_INTERNET_AND_CABLE"),
        "online",
        (59.0, 124.0),
        "xfinity.com",
    ),
    _m(
        "PG&E",
        "Pacific Gas and Electric",
        ("Service", "Utilities", "Gas"),
        "18068000",
        ("RENT_AND_UTILITIES", "RENT_AND_UTILITIES_GAS_AND_ELECTRICITY"),
        "online",
        (38.0, 221.0),
        "pge.com",
    ),
    _m(
        "ATM Withdrawal",
        None,
        ("Transfer", "Withdrawal", "ATM"),
        "21012002",
        ("TRANSFER_OUT", "TRANSFER_OUT_WITHDRAWAL"),
        "other",
        (20.0, 300.0),
    ),
    _m(
        "Monthly Service Fee",
        None,
        ("Bank Fees",),
        "10000000",
        ("BANK_FEES", "BANK_FEES_OTHER_BANK_FEES"),
        "other",
        (4.95, 14.95),
    ),
    _m(
        "CREDIT CARD 3333 PAYMENT *//",
        None,
        ("Payment", "Credit Card"),
        "16001000",
        ("LOAN_PAYMENTS", "LOAN_PAYMENTS_CREDIT_CARD_PAYMENT"),
        "other",
        (150.0, 1800.0),
    ),
)
_INCOME: tuple[Merchant, ...] = (
    _m(
        "ACME CORP PAYROLL",
        None,
        ("Transfer", "Payroll"),
        "21009000",
        ("INCOME", "INCOME_WAGES"),
        "other",
        (-4500.0, -1500.0),
    ),
    _m(
        "Venmo Cashout",
        "Venmo",
        ("Transfer", "Third Party", "Venmo"),
        "21010001",
        ("TRANSFER_IN", "TRANSFER_IN_ACCOUNT_TRANSFER"),
        "online",
        (-300.0, -10.0),
        "venmo.com",
    ),
)
_REFUND = _m(
    "AMZN Mktp US Refund",
    "Amazon",
    ("Shops", "Digital Purchase"),
    "19013000",
    (_SHOPS, "GENERAL_MERCHANDISE_ONLINE_MARKETPLACES"),
    "online",
    (-120.0, -5.0),
    "amazon.com",
)
_CARD_PAYMENT = _m(
    "Payment Thank You",
    None,
    ("Payment", "Credit Card"),
    "16001000",
    ("LOAN_PAYMENTS", "LOAN_PAYMENTS_CREDIT_CARD_PAYMENT"),
    "other",
    (-1800.0, -150.0),
)
SAVINGS: tuple[Merchant, ...] = (
    _m(
        "Interest Payment",
        None,
        ("Interest", "Interest Earned"),
        "15001000",
        ("INCOME", "INCOME_INTEREST_EARNED"),
        "other",
        (-25.0, -0.35),
    ),
    _m(
        "Transfer from Checking",
        None,
        ("Transfer", "Deposit"),
        "21007000",
        ("TRANSFER_IN", "TRANSFER_IN_TRANSFER_IN_FROM_APPS"),
        "other",
        (-900.0, -50.0),
    ),
    _m(
        "Transfer to Checking",
        None,
        ("Transfer", "Withdrawal"),
        "21012000",
        ("TRANSFER_OUT", "TRANSFER_OUT_ACCOUNT_TRANSFER"),
        "other",
        (50.0, 700.0),
    ),
)

# Merchant pools per account subtype: spending dominates checking and credit cards.
POOLS: dict[str, tuple[Merchant, ...]] = {
    "checking": _SPENDING * 3 + _BILLS + _INCOME,
    "credit card": _SPENDING * 4 + (_REFUND, _CARD_PAYMENT),
    "savings": SAVINGS,
    "money market": SAVINGS,
}

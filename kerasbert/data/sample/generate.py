"""Writes the sample sentiment dataset and its WordPiece vocabulary.

`python -m kerasbert.data.sample.generate [--out DIR]` composes short English
reviews of products, movies and restaurants from the hand-written phrase
lists below (seeded, so the output is byte-for-byte reproducible), splits
them into `train.tsv` / `dev.tsv` with no sentence shared between the two,
and learns an uncased WordPiece `vocab.txt` from the train sentences.

The label is not a lookup of one word: negation flips an adjective ("not
good" is negative, "not bad" positive), "would recommend" and "would not
recommend" share their words, in "X but Y" sentences the second clause
decides, and a score "N out of 10" is positive from 7 up.

Example:

>>> from kerasbert.data.sample.generate import generate_examples
>>> train, dev = generate_examples(train_size=20, dev_size=10)
>>> len(train), len(dev), sorted({label for _, label in train})
(20, 10, ['negative', 'positive'])
"""

import argparse
import random
import re
import string
from pathlib import Path

SEED = 20240611
TRAIN_SIZE = 4000
DEV_SIZE = 300
VOCAB_SIZE = 1400
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

NEG, POS = "negative", "positive"

# Each domain: things reviewed (text, is_plural) and aspects of them, plus
# adjectives that only fit that domain, by polarity.
DOMAINS = {
    "movie": {
        "subjects": [
            ("the movie", False),
            ("this film", False),
            ("the sequel", False),
            ("the documentary", False),
            ("this series", False),
            ("the show", False),
            ("the new thriller", False),
            ("this comedy", False),
            ("the remake", False),
            ("the animated feature", False),
            ("the horror flick", False),
            ("the musical", False),
            ("the season finale", False),
            ("the pilot", False),
            ("this western", False),
            ("the romantic drama", False),
        ],
        "aspects": [
            ("the plot", False),
            ("the acting", False),
            ("the soundtrack", False),
            ("the dialogue", False),
            ("the ending", False),
            ("the cinematography", False),
            ("the pacing", False),
            ("the special effects", True),
            ("the script", False),
            ("the lead actor", False),
            ("the cast", False),
            ("the story", False),
            ("the visuals", True),
            ("the jokes", True),
            ("the direction", False),
            ("the final act", False),
            ("the villain", False),
            ("the score", False),
            ("the costumes", True),
            ("the twist", False),
            ("the characters", True),
        ],
        "pos": [
            "gripping",
            "moving",
            "hilarious",
            "beautifully shot",
            "suspenseful",
            "touching",
            "clever",
            "memorable",
            "thrilling",
            "heartfelt",
        ],
        "neg": [
            "predictable",
            "confusing",
            "cheesy",
            "overlong",
            "pointless",
            "unwatchable",
            "clumsy",
            "forgettable",
            "melodramatic",
            "lifeless",
        ],
        "pos_vp": [
            "made me laugh out loud",
            "kept me on the edge of my seat",
            "stayed with me for days",
            "deserves every award",
            "had the whole theater cheering",
            "made me cry in the best way",
        ],
        "neg_vp": [
            "put me to sleep",
            "made me check my watch",
            "dragged on forever",
            "felt like a waste of two hours",
            "had people walking out",
            "made no sense at all",
        ],
        "pos_i": ["I would watch {x} again", "I can't wait to see {x} again", "we rewatched {x} the next day"],
        "neg_i": ["I walked out of {x}", "I fell asleep during {x}", "I want my ticket money back after {x}"],
        "context": [
            "we saw it at the midnight premiere",
            "I streamed it on a long flight",
            "my friends dragged me to the cinema",
            "we watched it with popcorn and soda",
            "I caught it at a film festival",
            "we rented it for family night",
            "my brother picked it for our weekly movie club",
            "I saw it in 3D on opening weekend",
        ],
    },
    "product": {
        "subjects": [
            ("this phone", False),
            ("the laptop", False),
            ("these headphones", True),
            ("the blender", False),
            ("this vacuum", False),
            ("the charger", False),
            ("the backpack", False),
            ("this keyboard", False),
            ("the coffee maker", False),
            ("this camera", False),
            ("the tablet", False),
            ("the printer", False),
            ("these shoes", True),
            ("the jacket", False),
            ("this mattress", False),
            ("the speaker", False),
            ("the smartwatch", False),
            ("this kettle", False),
            ("the router", False),
            ("these sunglasses", True),
            ("the toaster", False),
            ("the desk lamp", False),
            ("this suitcase", False),
            ("the drill", False),
        ],
        "aspects": [
            ("the battery life", False),
            ("the build quality", False),
            ("the screen", False),
            ("the sound", False),
            ("the price", False),
            ("the design", False),
            ("the packaging", False),
            ("the customer support", False),
            ("the setup", False),
            ("the fit", False),
            ("the material", False),
            ("the instructions", True),
            ("the app", False),
            ("the warranty", False),
            ("the delivery", False),
            ("the buttons", True),
            ("the zipper", False),
            ("the charging cable", False),
            ("the finish", False),
            ("the manual", False),
        ],
        "pos": [
            "sturdy",
            "reliable",
            "well made",
            "comfortable",
            "lightweight",
            "durable",
            "easy to use",
            "sleek",
            "fast",
            "a bargain",
        ],
        "neg": [
            "flimsy",
            "overpriced",
            "unreliable",
            "cheaply made",
            "uncomfortable",
            "fragile",
            "useless",
            "noisy",
            "defective",
            "a rip off",
        ],
        "pos_vp": [
            "works like a charm",
            "was worth every penny",
            "arrived early and works perfectly",
            "still works after 3 years",
            "exceeded my expectations",
            "does exactly what it promises",
        ],
        "neg_vp": [
            "broke after two days",
            "stopped working after a month",
            "fell apart in a week",
            "died after 10 minutes",
            "was a waste of money",
            "arrived damaged and scratched",
        ],
        "pos_i": [
            "I would happily buy {x} again",
            "I bought {x} again as a gift for my mom",
            "I use {x} every single day",
        ],
        "neg_i": ["I returned {x} after a week", "I regret buying {x}", "I threw {x} in the trash"],
        "context": [
            "I ordered it online during a holiday sale",
            "my sister gave it to me for christmas",
            "I bought it to replace my old one",
            "we picked it up at the mall",
            "I got it with a discount coupon",
            "I use it at the office and at home",
            "it came in a huge cardboard box",
            "the delivery guy left it at my neighbor",
        ],
    },
    "restaurant": {
        "subjects": [
            ("this restaurant", False),
            ("the cafe", False),
            ("this place", False),
            ("the bistro", False),
            ("the pizzeria", False),
            ("the diner", False),
            ("the sushi bar", False),
            ("the bakery", False),
            ("the food truck", False),
            ("the steakhouse", False),
            ("this noodle shop", False),
            ("the taco stand", False),
            ("the brunch spot", False),
            ("the pub", False),
            ("this vegan kitchen", False),
        ],
        "aspects": [
            ("the pasta", False),
            ("the service", False),
            ("the waiter", False),
            ("the staff", False),
            ("the dessert", False),
            ("the coffee", False),
            ("the burger", False),
            ("the atmosphere", False),
            ("the portions", True),
            ("the menu", False),
            ("the wine list", False),
            ("the soup", False),
            ("the curry", False),
            ("the tacos", True),
            ("the bread", False),
            ("the music", False),
            ("the fries", True),
            ("the salad", False),
            ("the ramen", False),
            ("the pancakes", True),
            ("the patio", False),
        ],
        "pos": [
            "delicious",
            "tasty",
            "fresh",
            "friendly",
            "cozy",
            "generous",
            "flavorful",
            "welcoming",
            "attentive",
            "mouthwatering",
        ],
        "neg": ["bland", "stale", "greasy", "rude", "cold", "soggy", "overcooked", "tasteless", "dirty", "salty"],
        "pos_vp": [
            "made our anniversary special",
            "was worth the drive",
            "is my new favorite spot",
            "had us coming back the next week",
            "hit the spot",
            "is a hidden gem",
        ],
        "neg_vp": [
            "made me sick",
            "took an hour to bring our food",
            "ruined our evening",
            "got our order wrong twice",
            "charged us for things we never ordered",
            "left us hungry",
        ],
        "pos_i": [
            "we will definitely go back to {x}",
            "I would eat at {x} every week",
            "we already booked another table at {x}",
        ],
        "neg_i": ["we will never go back to {x}", "we left {x} before dessert", "I would not feed {x} to my dog"],
        "context": [
            "we went there for my grandma's birthday",
            "we ordered takeout on a friday night",
            "we stopped by after a hockey game",
            "I took a client there for lunch",
            "we sat outside near the fountain",
            "we grabbed a quick breakfast before work",
            "we celebrated our graduation there",
            "we tried the chef's tasting menu",
        ],
    },
    "hotel": {
        "subjects": [
            ("this hotel", False),
            ("the resort", False),
            ("the hostel", False),
            ("the motel", False),
            ("this inn", False),
            ("the beach cottage", False),
            ("the airport hotel", False),
            ("the guesthouse", False),
            ("this lodge", False),
            ("the cabin", False),
            ("the suite", False),
            ("the cruise", False),
            ("the campground", False),
            ("this apartment rental", False),
        ],
        "aspects": [
            ("the room", False),
            ("the bed", False),
            ("the pool", False),
            ("the view", False),
            ("the breakfast", False),
            ("the bathroom", False),
            ("the front desk", False),
            ("the location", False),
            ("the wifi", False),
            ("the towels", True),
            ("the lobby", False),
            ("the gym", False),
            ("the shower", False),
            ("the balcony", False),
            ("the parking", False),
            ("the housekeeping", False),
            ("the pillows", True),
            ("the check in", False),
            ("the elevator", False),
            ("the neighborhood", False),
        ],
        "pos": [
            "spotless",
            "spacious",
            "quiet",
            "relaxing",
            "charming",
            "luxurious",
            "convenient",
            "peaceful",
            "bright",
            "immaculate",
        ],
        "neg": [
            "filthy",
            "cramped",
            "smelly",
            "shabby",
            "moldy",
            "outdated",
            "freezing",
            "loud",
            "sketchy",
            "run down",
        ],
        "pos_vp": [
            "felt like a second home",
            "made our honeymoon unforgettable",
            "upgraded us for free",
            "had the best sunset view",
            "went above and beyond for us",
            "is perfect for families",
        ],
        "neg_vp": [
            "lost our reservation",
            "had bugs in the bed",
            "kept us awake all night",
            "charged a hidden cleaning fee",
            "had no hot water for 3 days",
            "looked nothing like the photos",
        ],
        "pos_i": ["we will stay at {x} again next summer", "I would book {x} again", "we extended our stay at {x}"],
        "neg_i": ["we checked out of {x} a day early", "I asked for a refund from {x}", "I would never book {x} again"],
        "context": [
            "we stayed two nights for a wedding",
            "I booked it for a business conference",
            "we spent our spring break there",
            "we arrived late after a delayed train",
            "I stayed there during a marathon weekend",
            "we found it through a travel agency",
            "we traveled with our puppy",
            "we visited in early january",
        ],
    },
    "book": {
        "subjects": [
            ("this novel", False),
            ("the memoir", False),
            ("the cookbook", False),
            ("this biography", False),
            ("the mystery novel", False),
            ("the fantasy trilogy", False),
            ("this textbook", False),
            ("the short story collection", False),
            ("the audiobook", False),
            ("this poetry book", False),
            ("the graphic novel", False),
            ("the self help book", False),
            ("the travel guide", False),
        ],
        "aspects": [
            ("the writing", False),
            ("the prose", False),
            ("the chapters", True),
            ("the main character", False),
            ("the narrator", False),
            ("the first chapter", False),
            ("the recipes", True),
            ("the illustrations", True),
            ("the translation", False),
            ("the cover", False),
            ("the world building", False),
            ("the middle section", False),
            ("the author", False),
            ("the research", False),
            ("the conclusion", False),
            ("the footnotes", True),
            ("the maps", True),
        ],
        "pos": [
            "engaging",
            "insightful",
            "witty",
            "inspiring",
            "captivating",
            "thoughtful",
            "vivid",
            "elegant",
            "informative",
            "unputdownable",
        ],
        "neg": [
            "tedious",
            "shallow",
            "repetitive",
            "preachy",
            "clunky",
            "unreadable",
            "pretentious",
            "rambling",
            "inaccurate",
            "flat",
        ],
        "pos_vp": [
            "kept me up reading past midnight",
            "changed the way I cook",
            "taught me so much",
            "belongs on every shelf",
            "made my long flight fly by",
            "had me hooked from page one",
        ],
        "neg_vp": [
            "lost me after page 20",
            "reads like a bad essay",
            "has typos on every page",
            "ends without any payoff",
            "repeats the same point for 300 pages",
            "bored me to tears",
        ],
        "pos_i": ["I gave {x} to all my friends", "I finished {x} in one night", "I am already rereading {x}"],
        "neg_i": ["I gave up on {x} halfway", "I donated {x} after one chapter", "I skimmed most of {x}"],
        "context": [
            "I read it on a beach vacation",
            "my book club chose it last month",
            "I listened to it during my commute",
            "a librarian suggested it to me",
            "I found it in a secondhand shop",
            "my teacher assigned it in college",
            "I borrowed it from my cousin",
            "I read it aloud to my daughter",
        ],
    },
}

# Adjectives that fit any domain.
GENERAL_ADJ = {
    POS: [
        "good",
        "great",
        "excellent",
        "wonderful",
        "fantastic",
        "superb",
        "amazing",
        "delightful",
        "solid",
        "impressive",
        "brilliant",
        "lovely",
        "outstanding",
        "perfect",
        "terrific",
        "enjoyable",
        "pleasant",
        "fun",
        "top notch",
        "nice",
        "splendid",
        "marvelous",
        "phenomenal",
        "satisfying",
        "first rate",
        "stellar",
        "exceptional",
        "fabulous",
        "remarkable",
        "a delight",
        "a treat",
        "a joy",
    ],
    NEG: [
        "bad",
        "terrible",
        "awful",
        "horrible",
        "disappointing",
        "mediocre",
        "dull",
        "boring",
        "poor",
        "weak",
        "sloppy",
        "lousy",
        "dreadful",
        "annoying",
        "a mess",
        "a letdown",
        "subpar",
        "frustrating",
        "painful",
        "unpleasant",
        "atrocious",
        "abysmal",
        "pathetic",
        "dismal",
        "underwhelming",
        "second rate",
        "lackluster",
        "miserable",
        "shoddy",
        "a disaster",
        "a joke",
        "a chore",
    ],
}
# Negated negatives that read naturally as praise ("not bad at all").
SOFT_NEG = [
    "bad",
    "terrible",
    "awful",
    "boring",
    "disappointing",
    "bland",
    "overpriced",
    "dull",
    "a letdown",
    "predictable",
    "flimsy",
    "noisy",
]

INTENSIFIERS = [
    "",
    "",
    "",
    "very",
    "really",
    "truly",
    "incredibly",
    "quite",
    "pretty",
    "absolutely",
    "so",
    "rather",
    "extremely",
    "surprisingly",
    "genuinely",
    "remarkably",
    "totally",
    "honestly",
]
NEGATED_BE = {
    False: [
        "is not",
        "isn't",
        "was not",
        "wasn't",
        "was never",
        "is hardly",
        "was hardly",
        "is not at all",
        "was not very",
        "is not that",
    ],
    True: [
        "are not",
        "aren't",
        "were not",
        "weren't",
        "were never",
        "are hardly",
        "were hardly",
        "are not at all",
        "were not very",
        "are not that",
    ],
}
BE = {False: ["is", "was", "is", "was", "seems", "felt"], True: ["are", "were", "are", "were", "seem", "felt"]}

RECOMMEND = {
    POS: [
        "I would recommend {x}",
        "I would definitely recommend {x}",
        "I highly recommend {x}",
        "I can recommend {x} to anyone",
        "nothing wrong with {x}",
        "I can't complain about {x}",
        "no complaints about {x}",
        "I have nothing bad to say about {x}",
        "you won't regret {x}",
        "I was not disappointed by {x}",
    ],
    NEG: [
        "I would not recommend {x}",
        "I wouldn't recommend {x} to anyone",
        "I cannot recommend {x}",
        "I can't recommend {x}",
        "nothing special about {x}",
        "I did not enjoy {x}",
        "I didn't like {x} at all",
        "I have nothing good to say about {x}",
        "you will regret {x}",
        "I was not impressed by {x}",
    ],
}
LIKE = {
    POS: [
        "I loved",
        "we really enjoyed",
        "my kids adored",
        "I was impressed by",
        "we were blown away by",
        "I am in love with",
        "my wife raved about",
        "I was pleasantly surprised by",
        "everyone liked",
    ],
    NEG: [
        "I hated",
        "we really disliked",
        "my kids could not stand",
        "I was disappointed by",
        "we were let down by",
        "I am done with",
        "my wife complained about",
        "I was unpleasantly surprised by",
        "nobody liked",
    ],
}
CONTRAST = [
    "{a} but {b}",
    "{a}, but {b}",
    "{a}, however {b}",
    "{a}; still, {b}",
    "{a}, yet {b}",
    "although {a}, {b}",
    "even though {a}, {b}",
    "at first {a}, but in the end {b}",
    "sure, {a}, but {b}",
]
OPENERS = [
    "honestly,",
    "overall,",
    "to be fair,",
    "in short,",
    "after two visits,",
    "for the price,",
    "as a longtime fan,",
    "all in all,",
    "I have to say",
    "bottom line:",
    "update:",
    "well,",
    "so,",
    "frankly,",
    "long story short,",
    "in a word,",
    "my verdict:",
    "quick review:",
    "first impressions:",
    "okay,",
    "hmm,",
    "wow,",
    "sadly or not,",
    "according to my husband,",
    "my two cents:",
    "after much thought,",
    "last weekend,",
    "on a rainy tuesday,",
    "for what it is worth,",
]
CLOSERS = [
    "to be honest",
    "in my opinion",
    "all things considered",
    "if you ask me",
    "for sure",
    "no doubt",
    "in my experience",
    "as far as I can tell",
    "this time around",
    "judging by my visit",
    "from what I saw",
    "period",
    "end of story",
    "for the record",
    "by the way",
    "I guess",
]
ENDINGS = [".", ".", ".", ".", ".", "!", "!", "!!", "...", ""]
SMILEY = {POS: " :)", NEG: " :("}
RATING_TEMPLATES = [
    "I give {x} {n} out of 10",
    "{n} out of 10 for {x}",
    "{x}: {n}/10",
    "my rating for {x}: {n} out of 10",
]
SHORT = ["what a {adj} {noun}", "{adj} {noun}, {adj2} too", "simply {adj}", "{noun}? {adj}"]


def _flip(label):
    return POS if label == NEG else NEG


def _bare(noun):
    """'the plot' -> 'plot' (for exclamations like 'what a dull plot')."""
    return re.sub(r"^(the|this|these) ", "", noun)


class _Composer:
    """Draws one review of a requested label from the phrase lists."""

    def __init__(self, rng):
        self.rng = rng

    def pick(self, items):
        return self.rng.choice(items)

    def pick_common(self, items, head=6, p_head=0.75):
        """Like real text: the first `head` items are used most of the time."""
        if self.rng.random() < p_head:
            return self.pick(items[:head])
        return self.pick(items)

    def adjective(self, domain, label):
        if self.rng.random() < 0.85:
            return self.pick_common(GENERAL_ADJ[label], head=10, p_head=0.85)
        return self.pick_common(DOMAINS[domain]["pos" if label == POS else "neg"], head=4)

    def thing(self, domain):
        kind = "aspects" if self.rng.random() < 0.6 else "subjects"
        return self.pick(DOMAINS[domain][kind])

    def adjective_clause(self, domain, label):
        """'the plot was really gripping' or, negated, 'the plot was not bad'."""
        (noun, plural) = self.thing(domain)
        if self.rng.random() < 0.15:
            # Negated: the adjective has the opposite polarity of the label.
            if label == POS:
                adj = self.pick_common(SOFT_NEG, head=4)
            else:
                adj = self.pick_common(GENERAL_ADJ[POS], head=6, p_head=0.8)
            return f"{noun} {self.pick_common(NEGATED_BE[plural], head=4)} {adj}"
        intensifier = self.pick_common(INTENSIFIERS, head=5)
        adj = self.adjective(domain, label)
        if adj.startswith("a ") or " " in adj:
            intensifier = ""
        words = [noun, self.pick(BE[plural]), intensifier, adj]
        return " ".join(w for w in words if w)

    def verb_clause(self, domain, label):
        d = DOMAINS[domain]
        roll = self.rng.random()
        noun, _ = self.pick(d["subjects"])
        if roll < 0.35:
            key = "pos_vp" if label == POS else "neg_vp"
            return f"{noun} {self.pick_common(d[key], head=2)}"
        if roll < 0.55:
            key = "pos_i" if label == POS else "neg_i"
            return self.pick(d[key]).format(x=noun)
        if roll < 0.8:
            return self.pick_common(RECOMMEND[label], head=4).format(x=noun)
        noun, _ = self.thing(domain)
        return f"{self.pick_common(LIKE[label], head=3)} {noun}"

    def clause(self, domain, label):
        if self.rng.random() < 0.6:
            return self.adjective_clause(domain, label)
        return self.verb_clause(domain, label)

    def rating(self, domain, label):
        noun, _ = self.pick(DOMAINS[domain]["subjects"])
        n = self.rng.randint(7, 10) if label == POS else self.rng.randint(1, 4)
        return self.pick(RATING_TEMPLATES).format(x=noun, n=n)

    def short(self, domain, label):
        noun, plural = self.thing(domain)
        adj = self.adjective(domain, label)
        adj2 = self.adjective(domain, label)
        if adj.startswith("a ") or adj2.startswith("a "):
            return f"simply {adj}"
        template = self.pick(SHORT)
        if plural:
            template = template.replace("what a ", "what ")
        elif adj[0] in "aeiou":
            template = template.replace("what a ", "what an ")
        return template.format(adj=adj, adj2=adj2, noun=_bare(noun))

    def sentence(self, label):
        domain = self.pick(sorted(DOMAINS))
        roll = self.rng.random()
        if roll < 0.08:
            template = self.pick(CONTRAST)
            # The first clause says the opposite; the second decides.
            body = template.format(a=self.clause(domain, _flip(label)), b=self.clause(domain, label))
        elif roll < 0.13:
            body = self.rating(domain, label)
        elif roll < 0.18:
            body = self.short(domain, label)
        else:
            body = self.clause(domain, label)
        opener = self.pick(OPENERS) if self.rng.random() < 0.2 else ""
        closer = self.pick(CLOSERS) if self.rng.random() < 0.2 else ""
        if self.rng.random() < 0.05:
            # A neutral bit of context: "we ordered takeout on a friday night, and".
            opener = self.pick(DOMAINS[domain]["context"]) + ", and"
        words = [opener, body, closer]
        text = " ".join(w for w in words if w)
        text = text.replace(" ,", ",")
        ending = self.pick(ENDINGS)
        if self.rng.random() < 0.04:
            ending = SMILEY[label]
        return self.style(text + ending)

    def style(self, text):
        roll = self.rng.random()
        if roll < 0.6:
            return text[0].upper() + text[1:]
        if roll < 0.85:
            return text
        if roll < 0.95:
            # Shout one word: "the soup was SO cold."
            words = text.split(" ")
            i = self.rng.randrange(len(words))
            words[i] = words[i].upper()
            return " ".join(words)
        return text.upper()


def _key(sentence):
    """Duplicate key: case, punctuation and spacing do not make a new sentence."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", sentence.lower()).split())


def generate_examples(train_size=TRAIN_SIZE, dev_size=DEV_SIZE, seed=SEED):
    """Returns `(train, dev)`: lists of `(sentence, label)`, labels balanced.

    No sentence of dev equals (ignoring case and punctuation) one of train.
    """
    rng = random.Random(seed)
    composer = _Composer(rng)
    pools = {}
    seen = set()
    for label in (NEG, POS):
        needed = (train_size + dev_size) // 2
        pool = []
        while len(pool) < needed:
            sentence = composer.sentence(label)
            key = _key(sentence)
            if key in seen:
                continue
            seen.add(key)
            pool.append((sentence, label))
        pools[label] = pool
    half_dev = dev_size // 2
    dev = pools[NEG][:half_dev] + pools[POS][:half_dev]
    train = pools[NEG][half_dev:] + pools[POS][half_dev:]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def learn_vocabulary(sentences, vocab_size=VOCAB_SIZE):
    """Learns an uncased WordPiece vocabulary (list of tokens) from sentences.

    Uses tf-text's `bert_vocab_from_dataset` (BERT's basic split, then
    WordPiece), keeps `[PAD]` at id 0 followed by `[UNK] [CLS] [SEP] [MASK]`,
    and appends every printable ASCII letter, digit and punctuation mark and
    its `##` form that the learner did not produce, so no ASCII text maps to
    `[UNK]`.
    """
    import tensorflow as tf
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bv

    dataset = tf.data.Dataset.from_tensor_slices(list(sentences)).batch(256)
    learned = bv.bert_vocab_from_dataset(
        dataset,
        vocab_size=vocab_size,
        reserved_tokens=SPECIAL_TOKENS,
        bert_tokenizer_params={"lower_case": True},
        learn_params={"lower_thresh": 1, "num_iterations": 8},
    )
    vocab = list(SPECIAL_TOKENS)
    vocab += [t for t in learned if t not in vocab]
    chars = string.ascii_lowercase + string.digits + string.punctuation
    present = set(vocab)
    vocab += [c for c in chars if c not in present]
    vocab += ["##" + c for c in chars if "##" + c not in present]
    return vocab


def write_tsv(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("sentence\tlabel\n")
        for sentence, label in rows:
            assert "\t" not in sentence and '"' not in sentence, sentence
            f.write(f"{sentence}\t{label}\n")


def write_all(out_dir):
    """Writes `train.tsv`, `dev.tsv` and `vocab.txt` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, dev = generate_examples()
    write_tsv(out_dir / "train.tsv", train)
    write_tsv(out_dir / "dev.tsv", dev)
    vocab = learn_vocabulary([s for s, _ in train])
    with open(out_dir / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(t + "\n" for t in vocab))
    return {"train": len(train), "dev": len(dev), "vocab": len(vocab)}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m kerasbert.data.sample.generate",
        description="Regenerate the sample sentiment dataset and vocab.txt.",
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent),
        help="output folder (default: the package's sample folder)",
    )
    args = parser.parse_args(argv)
    counts = write_all(args.out)
    print(
        f"wrote {counts['train']} train, {counts['dev']} dev sentences and {counts['vocab']} vocab tokens to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

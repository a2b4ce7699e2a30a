"""Word lists the cleaning rules and the rephrase fidelity check share, apart from the rules (and numpy)
so that a light module can read them."""

# Gopher's stop-word list (Rae et al. 2021, A.1.1).
STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
# A wider English function-word list for the language check (offline, no model).
ENGLISH_WORDS = frozenset(
    "the be to of and a in that have i it for not on with he as you do at this but his by from they we "
    "say her she or an will my one all would there their what so up out if about who get which go me when "
    "make can like time no just him know take people into year your good some could them see other than "
    "then now look only come its over think also back after use two how our work first well way even new "
    "want because any these give day most us is are was were has had been".split()
)

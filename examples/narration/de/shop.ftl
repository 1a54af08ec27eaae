# Die Produktempfehlungen des Demo-Outdoorladens auf Deutsch.

feature-context_outdoor_share = Outdoor-Einkäufe
    .your = Ihr Anteil an Outdoor-Einkäufen
    .because = Sie oft Outdoor-Ausrüstung kaufen
feature-context_budget = Budget
    .your = Ihr Budget
    .because = es zu Ihrem Budget passt
feature-context_member = Mitgliedschaft
    .your = Ihre Mitgliedschaft
    .because = Mitglieder es günstiger bekommen
feature-context_age = Alter
feature-item_category = Produktart
    .because = es die Art Ausrüstung ist, die Sie kaufen
feature-item_price = Preis
    .more = höher
    .less = niedriger
    .because = sein Preis zu Ihnen passt
feature-item_weight_kg = Gewicht
    .more = schwerer
    .less = leichter
    .because = es leicht zu tragen ist
feature-item_rating = Bewertung
    .more = besser
    .less = schlechter
    .because = andere es gut bewerten
feature-item_tier = Sortiment

custom-notice-shop-title = Wie wir Produkte empfehlen
custom-notice-shop-purpose = Ein automatisiertes Modell ordnet die Produkte, die wir Ihnen zeigen, danach, wie gut sie wahrscheinlich zu Ihnen passen; diese Seite sagt, was es dafür nutzt und was wir speichern.

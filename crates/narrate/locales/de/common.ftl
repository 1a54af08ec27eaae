# Sidelight-Erzähler, Deutsch: gemeinsame Wörter aller Zielgruppen.
#
# Jede Nachricht kann in eigenen .ftl-Dateien überschrieben werden; welche Variablen eine
# Nachricht verwenden darf, steht in der englischen Datei gleichen Namens.

## Werte

value-yes = ja
value-no = nein
value-missing = kein Wert
value-quoted = „{ $text }“
value-money = { $number } { $currency }
value-percent = { $number } %
value-unit = { $number } { $unit }
unit-days = { $count ->
    [one] Tag
   *[other] Tage
}
unit-months = { $count ->
    [one] Monat
   *[other] Monate
}
unit-years = { $count ->
    [one] Jahr
   *[other] Jahre
}
list-and = und

## Benennung eines Merkmals ohne eigene `feature-<name>`-Nachricht. Ohne Kenntnis des
## grammatischen Geschlechts bleibt nur die neutrale Form „das Merkmal …“.

feature-default-your = das Merkmal „{ $feature }“
feature-default-more = höher
feature-default-less = niedriger
feature-default-step-more = ein höherer Wert bei „{ $feature }“
feature-default-step-less = ein niedrigerer Wert bei „{ $feature }“

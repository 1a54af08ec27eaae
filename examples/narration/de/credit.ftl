# Das Kreditmodell der Demo auf Deutsch: wie seine Merkmale heißen, der eigene
# Entscheidungssatz der Route und ihre Entscheidungswörter (`decision.favourable` und
# `decision.unfavourable` der Konfiguration). `sidelight demo` bettet diese Datei ein; für
# `sidelight serve` zeigt `[narration] dir` auf examples/narration.

feature-checking_account = Kontostand des Girokontos
    .your = Ihr Girokontostand
feature-duration_months = Kreditlaufzeit
    .your = Ihre Kreditlaufzeit
    .more = länger
    .less = kürzer
    .step-more = eine längere Kreditlaufzeit
    .step-less = eine kürzere Kreditlaufzeit
feature-credit_history = Kredithistorie
    .your = Ihre Kredithistorie
feature-purpose = Verwendungszweck des Kredits
    .your = der Verwendungszweck des Kredits
feature-credit_amount = Kreditbetrag
    .your = der Kreditbetrag
    .step-more = ein höherer Kreditbetrag
    .step-less = ein niedrigerer Kreditbetrag
feature-savings = Sparguthaben
    .your = Ihr Sparguthaben
feature-employed_since = Dauer der aktuellen Beschäftigung
    .your = die Dauer Ihrer aktuellen Beschäftigung
    .more = länger
    .less = kürzer
feature-installment_rate_pct_income = Rate im Verhältnis zum Einkommen
    .your = Ihre Rate im Verhältnis zu Ihrem Einkommen
feature-personal_status_sex = Familienstand und Geschlecht
feature-other_debtors = weitere Schuldner oder Bürgen
    .your = die Angabe zu weiteren Schuldnern oder Bürgen
feature-residence_since_years = Wohndauer an der aktuellen Adresse
    .your = Ihre Wohndauer an der aktuellen Adresse
    .more = länger
    .less = kürzer
feature-property = Vermögen
    .your = Ihr Vermögen
feature-age_years = Alter
feature-other_installment_plans = andere Ratenkredite
    .your = die Angabe zu anderen Ratenkrediten
feature-housing = Wohnsituation
    .your = Ihre Wohnsituation
feature-home = Wohnen und Eigentum
    .your = Ihre Wohn- und Eigentumsverhältnisse
feature-existing_credits = bestehende Kredite bei dieser Bank
    .your = die Zahl Ihrer Kredite bei dieser Bank
feature-job = Beruf
    .your = Ihr Beruf
feature-dependents = unterhaltsberechtigte Personen
    .your = die Zahl der von Ihnen unterhaltenen Personen
feature-telephone = Telefon
    .your = ein Telefonanschluss auf Ihren Namen
feature-foreign_worker = ausländische Arbeitskraft

custom-credit-decision = { $favourable ->
    [yes] Ihr Kreditantrag wurde genehmigt.
   *[no] Wir können Ihren Kreditantrag derzeit leider nicht genehmigen.
}

custom-outcome-approved = genehmigt
custom-outcome-declined = abgelehnt

# Begründungscodes ([[routes.explain.reasons]]): die Hauptgründe einer Ablehnung. Ohne
# Variablen.
custom-reason-CHECKING_ACCOUNT = Kontostand Ihres Girokontos
custom-reason-LOAN_DURATION = Beantragte Laufzeit des Kredits
custom-reason-CREDIT_HISTORY = Ihre bisherige Kreditgeschichte
custom-reason-LOAN_PURPOSE = Verwendungszweck des Kredits
custom-reason-LOAN_AMOUNT = Beantragte Kreditsumme
custom-reason-SAVINGS = Vorhandene Ersparnisse
custom-reason-EMPLOYMENT = Dauer und Art der Beschäftigung
custom-reason-INSTALMENT_RATE = Rate im Verhältnis zu Ihrem Einkommen
custom-reason-HOME = Wohnsituation und Eigentum
custom-reason-OTHER_CREDITS = Andere Kredite und Verpflichtungen

# Die eigenen Sätze des Hinweises dieser Route (GET /v1/notice/credit). Ohne Variablen.
custom-notice-credit-title = Wie wir über Kreditanträge entscheiden
custom-notice-credit-purpose = Ein automatisiertes Modell bewertet jeden Kreditantrag und schlägt vor, ob er genehmigt wird; diese Seite sagt, was es verwendet, was wir aufbewahren und wie eine Person Ihre Entscheidung prüfen kann.

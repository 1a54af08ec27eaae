# The demo's credit model in English: how its features are named, and the route's own
# decision sentence. `sidelight demo` embeds this file; for `sidelight serve`, point
# `[narration] dir` at examples/narration (it reads <dir>/<locale>/*.ftl).

feature-checking_account = checking account balance
    .your = your checking account balance
feature-duration_months = loan duration
    .your = your loan duration
    .more = longer
    .less = shorter
    .step-more = a longer loan duration
    .step-less = a shorter loan duration
feature-credit_history = credit history
    .your = your credit history
feature-purpose = purpose of the loan
    .your = the purpose of the loan
feature-credit_amount = loan amount
    .your = the loan amount
    .step-more = a higher loan amount
    .step-less = a lower loan amount
feature-savings = savings
    .your = your savings
feature-employed_since = time in current job
    .your = your time in your current job
    .more = longer
    .less = shorter
feature-installment_rate_pct_income = instalment as a share of income
    .your = your instalment as a share of your income
feature-personal_status_sex = personal status and sex
feature-other_debtors = other debtors or guarantors
    .your = other debtors or guarantors
feature-residence_since_years = years at current address
    .your = the time at your current address
    .more = longer
    .less = shorter
feature-property = property
    .your = your property
feature-age_years = age
feature-other_installment_plans = other instalment plans
    .your = your other instalment plans
feature-housing = housing
    .your = your housing situation
feature-home = home and property
    .your = your home and property
feature-existing_credits = existing credits at this bank
    .your = the number of your credits at this bank
feature-job = job
    .your = your job
feature-dependents = dependents
    .your = the number of people you support
feature-telephone = telephone
    .your = a telephone in your name
feature-foreign_worker = foreign worker

custom-credit-decision = { $favourable ->
    [yes] Your loan application has been approved.
   *[no] We cannot approve your loan application at this time.
}

# Reason codes ([[routes.explain.reasons]]): the principal reasons of a declined
# application, as an adverse-action notice states them. No variables.
custom-reason-CHECKING_ACCOUNT = Balance of your current account
custom-reason-LOAN_DURATION = Length of the loan requested
custom-reason-CREDIT_HISTORY = Your credit history
custom-reason-LOAN_PURPOSE = Purpose of the loan
custom-reason-LOAN_AMOUNT = Amount of credit requested
custom-reason-SAVINGS = Savings held
custom-reason-EMPLOYMENT = Length and kind of employment
custom-reason-INSTALMENT_RATE = Instalment as a share of your income
custom-reason-HOME = Housing and property
custom-reason-OTHER_CREDITS = Other credits and obligations

# The route's own notice sentences (GET /v1/notice/credit). No variables.
custom-notice-credit-title = How we decide on loan applications
custom-notice-credit-purpose = An automated model assesses each loan application and proposes whether to approve it; this page says what it uses, what we keep, and how you can have a person look at your decision.

-- Monthly spend per advertising channel (entered on «Рекламные каналы»): with the обращения,
-- bookings and visits a channel brought, the cost of each (crm/rules/ad_channels.py: costs).
CREATE TABLE ad_spend (
    channel_id  INTEGER NOT NULL REFERENCES ad_channels(id) ON DELETE CASCADE,
    month       TEXT NOT NULL,              -- YYYY-MM
    amount      REAL NOT NULL,              -- roubles spent that month
    PRIMARY KEY (channel_id, month)
)

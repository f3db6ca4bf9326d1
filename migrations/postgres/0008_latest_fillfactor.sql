alter table forecasts_latest set (fillfactor = 50);
